"""Layer 2: the Diversity-Enhanced Framework (DEF; Liu et al. 2025a).

Virtual participants (country + persona from respondent microdata or
marginals, a random location, varied generation settings, a memory of their
earlier valid answers) answer a questionnaire several times, so a model's
answers form a distribution comparable to a human survey's. Outputs: KL per
question and value dimension (DEF's inf → max + 1 rule and an ε-smoothed
column), demographic preference bias, FF/CV insensitivity, and the cultural
variation map. Audit-file key: ``layers.def`` (``DEFSettings``; the older
``layers.diversity`` is accepted with a deprecation note). Entry points:
:mod:`.layer`, registered in :mod:`valuelens.layers.registry` (which says
why the folder is ``def_layer``: ``def`` is a Python keyword).
"""
