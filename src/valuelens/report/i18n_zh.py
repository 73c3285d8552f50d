"""The report's Chinese texts (valuelens.report.i18n): English text → Chinese (Simplified).

Placeholders ({n}, {model}, …) are kept as they are; a translation may move them. Terms of art keep their
usual Chinese names (KL 散度, Jensen–Shannon 距离, 自助法), table and column names stay as exported.
"""

from __future__ import annotations

from valuelens.comparisons.catalogue import POSITION_MEANING

_MAIN: dict[str, str] = {
    # ---- page frame (templates) ----
    "Contents": "目录",
    "Table": "表",
    "{n} rows": "{n} 行",
    "as exported": "按导出原样",
    "{n} flag": "{n} 个标记",
    "{n} flags": "{n} 个标记",
    "; ": "；",
    ".": "。",
    "Trace:": "推理轨迹：",
    "Generated {when} by valuelens {version} from": "由 valuelens {version} 于 {when} 生成，数据来源：",
    "Results tables: results/ (Parquet and CSV) beside each run's run.json.":
        "结果表：各运行目录中 run.json 旁的 results/（Parquet 与 CSV 格式）。",
    "Demo / toy models: {models}. These are small or scripted models for trying the pipeline end to end; their "
    "numbers say nothing about how a production model aligns with any culture.":
        "演示／玩具模型：{models}。这些是用于端到端试运行流程的小模型或脚本模型；其数值不能说明任何实际部署的模型与任何文化的对齐程度。",
    "Reference data of {layers}: synthetic — not human data (valuelens' generated demo respondents, with a known "
    "answer process). Distances to them test the pipeline, not a model's fit to any real population.":
        "{layers} 的参照数据：合成数据——并非人类数据（valuelens 生成的演示受访者，其作答过程已知）。与它们的距离只检验流程本身，"
        "不反映模型与任何真实人群的契合程度。",
    "valuelens {version} · this file needs no network: plotly.js {plotly} is embedded below.":
        "valuelens {version} · 本文件无需联网：plotly.js {plotly} 已内嵌于页面底部。",
    "valuelens audit: {name}": "valuelens 审计：{name}",
    "valuelens comparison: {runs}": "valuelens 对比：{runs}",
    "yes": "是",
    "no": "否",
    # ---- overview ----
    "Overview": "总览",
    "Other": "其他",
    "Every model on every headline measure": "每个模型在每项核心指标上的结果",
    "A row per headline measure (per culture, prompt language or context where the layer gives one), a column per "
    "model, a panel per layer. Colour: orange (⚑ beside the value) = flagged for a human look (the rule of the "
    "oversight table in the "
    "summary), green = within its rule, grey = a measure without a rule (shown, not judged); blank = no value. "
    "Hover a cell for its 95% interval, which direction is better and the rule. Values as in the summary: a simple "
    "mean of the table column over the model's rows.":
        "每行是一项核心指标（若该层按文化、提示语言或上下文区分，则每种各占一行），每列是一个模型，每个面板对应一个评估层。"
        "颜色：橙色（数值旁标 ⚑）= 已标记，需人工复核（规则见摘要中的人工监督表）；绿色 = 在规则范围内；灰色 = 该指标无判定规则（仅展示，不作判断）；"
        "空白 = 无数值。将鼠标悬停在单元格上可查看其 95% 区间、哪个方向更好以及判定规则。数值与摘要一致：该模型各行在表中对应列的简单平均。",
    "No headline value yet: the overview shows every model's headline measures once a layer has written its "
    "tables.": "尚无核心指标数值：待某一评估层写出结果表后，总览会显示每个模型的核心指标。",
    "no value": "无数值",
    "value {v}": "数值 {v}",
    "95% interval [{low}, {high}]": "95% 区间 [{low}, {high}]",
    "no interval ({why})": "无区间（{why}）",
    "higher is better": "越高越好",
    "lower is better": "越低越好",
    "flag when {rule}": "标记条件：{rule}",
    "flagged: {where}": "已标记：{where}",
    # ---- summary ----
    "Summary": "摘要",
    "Cultures: {countries}; prompt languages: {languages}; models: {n}.":
        "文化：{countries}；提示语言：{languages}；模型数：{n}。",
    "none recorded": "未记录",
    "none": "无",
    "Layers": "评估层",
    "included": "已包含",
    "Bias profile per model": "各模型的偏差概况",
    "measure": "指标",
    "what it means": "含义",
    "source column": "来源列",
    "What the measures mean": "各项指标的含义",
    "One sentence per headline measure: what it measures, which direction is better, and when it raises a flag. "
    "Values are compared with a threshold as printed (3 decimals).":
        "每项核心指标一句话说明：它衡量什么、哪个方向更好、何时触发标记。数值按显示值（3 位小数）与阈值比较。",
    "Higher is better.": "越高越好。",
    "Lower is better.": "越低越好。",
    "Shown, not ranked: neither direction is better in itself.": "仅展示，不参与排名：数值高低本身无好坏之分。",
    "Flagged for a human look when {rule}: {meaning}.": "当 {rule} 时标记，需人工复核：{meaning}。",
    "No flag.": "无标记规则。",
    "metric": "指标",
    "flag when": "标记条件",
    "meaning": "含义",
    "Human oversight: rules": "人工监督：规则",
    "A value beyond the threshold means a person should look at the model's answers before relying on it for this "
    "culture. The rule is applied to the value as printed (3 decimals): 0.500 is not below 0.5.":
        "数值越过阈值，意味着在针对该文化使用此模型之前，应由人工查看模型的回答。规则作用于显示值（3 位小数）：0.500 不算低于 0.5。",
    "model": "模型",
    "where": "范围",
    "value": "数值",
    "rule": "规则",
    "Human oversight: {n} flag raised": "人工监督：触发 {n} 个标记",
    "Human oversight: {n} flags raised": "人工监督：触发 {n} 个标记",
    "What each flag means: see the rules above.": "各标记的含义见上方规则表。",
    "Human oversight: no flag raised by the rules above.": "人工监督：上述规则未触发任何标记。",
    "Position-dominated choices: {n} not value finding": "位置主导的选择：{n} 项不构成价值观结论",
    "Position-dominated choices: {n} not value findings": "位置主导的选择：{n} 项不构成价值观结论",
    "Rule: {rule}. These models answer by the option's place in the prompt, not its content; their figures are "
    "marked in each layer and must not be read as their values.":
        "规则：{rule}。这些模型依据选项在提示中的位置而非内容作答；其图表已在各层中标注，不能解读为其价值观。",
    "Position bias: no model's choices are position-dominated ({parts}; {rule}).":
        "位置偏差：没有模型的选择由位置主导（{parts}；{rule}）。",
    "{n} request failed (rejected by the server, e.g. the prompt is too long for the model); those items have no "
    "probabilities or an empty text in the tables, and a rerun asks for them again.":
        "{n} 个请求失败（被服务器拒绝，例如提示对该模型过长）；这些条目在表中没有概率或文本为空，重新运行时会再次请求。",
    "{n} requests failed (rejected by the server, e.g. the prompt is too long for the model); those items have no "
    "probabilities or an empty text in the tables, and a rerun asks for them again.":
        "{n} 个请求失败（被服务器拒绝，例如提示对该模型过长）；这些条目在表中没有概率或文本为空，重新运行时会再次请求。",
    "failed ({error}); it has no results in the tables; the other models ran. Rerunning the same command retries it "
    "(the others come from the cache).":
        "运行失败（{error}）；结果表中没有它的结果，其他模型已正常运行。重新执行同一命令会重试该模型（其他模型的结果取自缓存）。",
    "no error recorded": "未记录错误",
    "{n} option distribution estimated from sampled answers (its server gave no log-probabilities): shares of N "
    "samples at temperature 1, with sampling error, not exact probabilities.":
        "{n} 个选项分布由采样回答估计（其服务器未提供对数概率）：为温度 1 下 N 次采样的占比，含抽样误差，并非精确概率。",
    "{n} option distributions estimated from sampled answers (its server gave no log-probabilities): shares of N "
    "samples at temperature 1, with sampling error, not exact probabilities.":
        "{n} 个选项分布由采样回答估计（其服务器未提供对数概率）：为温度 1 下 N 次采样的占比，含抽样误差，并非精确概率。",
    # ---- run facts, catalogue, about ----
    "Run facts": "运行信息",
    "no run.json in {dir}.": "{dir} 中没有 run.json。",
    "status": "状态",
    "error": "错误",
    "output directory": "输出目录",
    "audit file": "审计文件",
    "run id": "运行 ID",
    "started": "开始时间",
    "ended": "结束时间",
    "seed": "随机种子",
    "countries": "国家",
    "languages": "语言",
    "layers in the audit": "审计包含的评估层",
    "calls made (this run)": "本次运行的调用次数",
    "calls served from the cache (this run)": "本次运行由缓存提供的调用次数",
    "runs on this output directory": "该输出目录上的运行次数",
    "calls made (all runs)": "调用次数（全部运行）",
    "calls in the store": "存储中的调用数",
    "version: {name}": "版本：{name}",
    "fact": "项目",
    "From {path}.": "来自 {path}。",
    "calls made": "调用次数",
    "calls cached": "缓存调用次数",
    "faults": "故障",
    "calls and faults per model": "各模型的调用与故障",
    "Faults are the backend's counters (retries, timeouts, errors) for the models that finished.":
        "故障为后端对已完成模型的计数（重试、超时、错误）。",
    "Model catalogue": "模型目录",
    "From results/models (or, before it exists, the audit in run.json).":
        "来自 results/models（若尚不存在，则来自 run.json 中的审计配置）。",
    "Model names that occur in several runs are shown as MODEL@RUN.": "在多个运行中出现的模型名显示为 模型@运行。",
    "No model catalogue recorded.": "未记录模型目录。",
    "About these numbers": "关于这些数字",
    "Every number is read from the exported tables in results/ (Parquet and CSV) or from run.json; the only "
    "aggregation is the simple mean of a table column, and each table or figure says over which rows.":
        "所有数字均读自 results/ 中导出的表（Parquet 与 CSV）或 run.json；唯一的汇总方式是对表中某列取简单平均，"
        "每张表或图都会说明是对哪些行取的平均。",
    "Numbers are shown with 3 decimals; p-values below 0.001 as <0.001; — means no value. A flag's rule is applied "
    "to the value as printed.":
        "数字保留 3 位小数；小于 0.001 的 p 值显示为 <0.001；— 表示无数值。标记规则作用于显示值。",
    "1−JSD uses the Jensen–Shannon distance (the square root of the divergence, natural log), clipped to [0, 1], as "
    "in Cao et al.'s code. EMD is the 1-D Wasserstein distance over option positions, divided by (number of "
    "options − 1).":
        "1−JSD 使用 Jensen–Shannon 距离（散度的平方根，自然对数），截断到 [0, 1]，与 Cao 等人的代码一致。"
        "EMD 为选项位置上的一维 Wasserstein 距离，再除以（选项数 − 1）。",
    "Tables with a condition column: headline values, ranking and flags use the zero-shot (ZS) rows.":
        "含 condition 列的表：核心指标、排名和标记使用零样本（ZS）行。",
    # ---- headline values, ranking ----
    "Per-model values are simple means of a table column over the model's rows (NaN skipped): ":
        "各模型的数值为该模型各行在表中某列的简单平均（跳过 NaN）：",
    "rows with condition {c}": "condition 为 {c} 的行",
    "all rows": "全部行",
    "one per item": "每个条目一个值",
    "one per language": "每种语言一个值",
    ", per {by}": "，按{by}",
    "Intervals [low, high]: 95%, percentile bootstrap over items ({n} resamples, seed {seed}; where a value is a "
    "mean over prompt languages, items are resampled within each language; position TVs: over the answers, the "
    "no-bias baseline recomputed per resample), or the layer table's own interval where a model has one row "
    "(dilemma and MARK rates, per language).":
        "区间 [下限, 上限]：95%，对条目做百分位自助法（{n} 次重抽样，种子 {seed}；若数值是多种提示语言的平均，则在每种语言内重抽样；"
        "位置 TV：对回答重抽样，每次重抽样重新计算无偏基线），或在模型只有一行时采用该层表格自带的区间（两难与 MARK 的比率，按语言）。",
    "No interval ({why}): {metrics}.": "无区间（{why}）：{metrics}。",
    "no interval": "无区间",
    "not distinguishable from {models}": "与 {models} 无法区分",
    "all items": "全部条目",
    "{rule} (mean)": "{rule}（平均值）",
    " and ": " 且 ",
    "position": "名次",
    "{k} of {n}": "{n} 项中的 {k} 项",
    "mean rank": "平均名次",
    "metrics where its interval overlaps neither neighbour": "区间与相邻模型均不重叠的指标数",
    "Model ranking for {cultures}": "模型排名（{cultures}）",
    "the audited cultures": "所审计的文化",
    "Models ordered by their mean rank over the metrics shown that they have a value for (#1 = best on that "
    "metric; ties share the better rank). [low, high] = 95% interval; “not distinguishable from X” = its interval "
    "overlaps that of X, a neighbour in that metric's order (or X has no interval), so the two ranks are not a "
    "finding. ":
        "模型按其在所示（且有数值的）指标上的平均名次排序（#1 = 该指标上最好；并列取较好的名次）。[下限, 上限] = 95% 区间；"
        "“与 X 无法区分” = 其区间与该指标排序中相邻的 X 的区间重叠（或 X 没有区间），因此这两个名次的先后不构成结论。",
    "higher": "越高越好",
    "lower": "越低越好",
    "not ranked": "不排名",
    "none ({why})": "无（{why}）",
    "95% interval": "95% 区间",
    "better": "更好的方向",
    "Headline values of {model}": "{model} 的核心指标",
    "One model with headline values: nothing to rank, and no comparison between models. ":
        "只有一个模型有核心指标：无从排名，也不做模型间比较。",
    "No headline metric is available yet, so models are not ranked.": "尚无核心指标，因此不对模型排名。",
    # ---- comparisons ----
    "Comparisons": "组间比较",
    "Comparisons need at least two models with headline values; this report has {n}, so nothing is compared.":
        "组间比较至少需要两个有核心指标的模型；本报告只有 {n} 个，因此不做比较。",
    "Groups of models from the catalogue compared on the headline metrics, in the layout of the paper's Table 1 "
    "(Mean, SD, SEM, t, DF, SED, p). Unit of analysis: item = one observation per item (question × culture × prompt "
    "language), its value the mean over the group's models, each group its own items (DF = n1 + n2 − 2 for "
    "Student); paired = the items both groups have, pair by pair; model = one headline value per model. Two-sided "
    "tests; SD with ddof 1; SEM = SD/√n; SED = standard error of the difference; d = Cohen's d (pooled SD; d_z for "
    "paired t); r = rank-biserial correlation; the interval is the 95% interval of the difference (first group − "
    "second). Wilcoxon signed-rank pairs the items both groups have. ":
        "按模型目录分组，在核心指标上进行组间比较，版式同论文表 1（Mean、SD、SEM、t、DF、SED、p）。分析单位：条目 = 每个条目"
        "（问题 × 文化 × 提示语言）一个观测值，其值为组内各模型的平均，每组使用各自的条目（Student 检验 DF = n1 + n2 − 2）；"
        "配对 = 两组共有的条目逐一配对；模型 = 每个模型一个核心指标值。双侧检验；SD 取 ddof 1；SEM = SD/√n；SED = 差值的标准误；"
        "d = Cohen's d（合并 SD；配对 t 检验为 d_z）；r = 秩二列相关；区间为差值（第一组 − 第二组）的 95% 区间。"
        "Wilcoxon 符号秩检验对两组共有的条目配对。",
    "none of Student, Welch, paired t": "Student、Welch、配对 t 检验均未运行",
    "items": "条目",
    "paired items": "配对条目",
    "models": "模型",
    "group": "组",
    "mean": "均值",
    "95% interval of the difference": "差值的 95% 区间",
    "test": "检验",
    "Unit: {unit}.": "单位：{unit}。",
    "From: {origin}.": "来源：{origin}。",
    "Not tested ({reason}): {metrics}.": "未检验（{reason}）：{metrics}。",
    "{test} not run: {why}": "{test} 未运行：{why}",
    "{label}: {a} vs {b} (unit: {unit})": "{label}：{a} 对 {b}（单位：{unit}）",
    "statistic": "统计量",
    "effect size": "效应量",
    ": tests": "：全部检验",
    "Every test run, with its effect size. Bootstrap: percentile interval of the difference of the means (paired: "
    "of the mean item difference), no p.":
        "列出运行的每项检验及其效应量。自助法：均值之差的百分位区间（配对时为条目差值均值的区间），不给 p 值。",
    "{label}: per-model values": "{label}：各模型数值",
    "Each dot is one model's headline value (the observations of the model-level tests above); bars are group "
    "means.": "每个点是一个模型的核心指标值（即上方模型级检验的观测值）；柱为组均值。",
    "{label}: {a} vs {b} ({origin}): nothing tested.": "{label}：{a} 对 {b}（{origin}）：未做任何检验。",
    "Not compared": "未比较",
    "unadjusted": "未校正",
    "over {n} test": "共 {n} 项检验",
    "over {n} tests": "共 {n} 项检验",
    "Adjusted p values, per test over every comparison in this report — ":
        "校正后的 p 值，按检验类型对本报告中的全部比较进行校正——",
    "origin region": "来源地区",
    "model family": "模型系列",
    "architecture": "架构",
    "alignment method": "对齐方法",
    "size (params_b: small < 10 B ≤ medium < 50 B ≤ large)": "规模（params_b：小 < 10 B ≤ 中 < 50 B ≤ 大）",
    "audit file comparisons[{i}]": "审计文件 comparisons[{i}]",
    "{n} model": "{n} 个模型",
    "{n} models": "{n} 个模型",
    "No headline metric is available yet, so there is nothing to compare.": "尚无核心指标，因此无可比较。",
    "{origin}: {label} {a} vs {b} not compared: no model with a known {by} {missing} in this report ({groups}).":
        "{origin}：{label} {a} 对 {b} 未比较：本报告中没有 {by} 为 {missing} 的模型（{groups}）。",
    " or ": " 或 ",
    "A group of one model: this compares two models (over items), not two groups.":
        "有一组只有一个模型：这是（在条目上）比较两个模型，而不是比较两个组。",
    "no model has a known value": "没有模型有已知取值",
    "only one group: {groups}": "只有一组：{groups}",
    "{label} ({column}): not compared; a group comparison needs at least {n} models in each of two groups "
    "({detail}).": "{label}（{column}）：未比较；组间比较要求两组各至少 {n} 个模型（{detail}）。",
    "automatic": "自动",
    "Paired differences across runs": "跨运行的配对差值",
    "No model occurs in the first run and a later one with per-item values on the same items, so there is nothing "
    "to pair (a model is matched across runs by its name).":
        "没有模型同时出现在第一次运行和之后的运行中并在相同条目上有逐条目数值，因此无可配对（跨运行按模型名匹配）。",
    "Each model that occurs in the first run and a later one (matched by name), on each headline metric with "
    "per-item values: the items both runs have, later run − first run. Paired t (DF = pairs − 1; d_z = mean "
    "difference / SD of the differences), Wilcoxon signed-rank (r = rank-biserial), and a percentile bootstrap "
    "interval of the mean difference ({resamples}). p (Holm): over the paired t tests of this section.":
        "对同时出现在第一次运行和之后某次运行中的每个模型（按名称匹配），在每项有逐条目数值的核心指标上：取两次运行共有的条目，"
        "计算后一次运行 − 第一次运行。配对 t 检验（DF = 配对数 − 1；d_z = 平均差值 / 差值的 SD）、Wilcoxon 符号秩检验"
        "（r = 秩二列相关），以及平均差值的百分位自助法区间（{resamples}）。p（Holm）：对本节的配对 t 检验校正。",
    "runs": "运行",
    "mean (first)": "均值（第一次）",
    "mean (later)": "均值（之后）",
    "difference": "差值",
    "95% interval (bootstrap)": "95% 区间（自助法）",
    "paired t": "配对 t",
    "Wilcoxon p": "Wilcoxon 检验 p 值",
    "Paired differences per model and metric": "各模型与指标的配对差值",
    "— where a test cannot run (e.g. all differences zero: no variation to test).":
        "— 表示无法运行检验（例如所有差值为零：没有可检验的变异）。",
    # ---- the sample browser (report/samples.py) ----
    "Sample browser": "样本浏览器",
    "Every model call the layers made: the prompt as sent, the reply or the option probabilities, the parsed "
    "answer and whether it was valid. Filter by model, layer, language or any text (an item id, words of the "
    "prompt or reply). Links beside flags, headline metrics and figures open it filtered to the samples behind "
    "them.":
        "各评估层发出的每一次模型调用：实际发送的提示、回复或选项概率、解析出的答案以及是否有效。可按模型、评估层、语言或任意文本"
        "（条目 ID、提示或回复中的词语）筛选。标记、核心指标和图表旁的链接会打开它，并筛选出其背后的样本。",
    "{shown} of {total} samples are embedded: at most {cap} per model × layer × table × language, spread evenly "
    "over each; all are in {path} (one row per call; join key: model, table, row_id).":
        "共 {total} 个样本，页面内嵌 {shown} 个：每个 模型 × 评估层 × 表 × 语言 最多 {cap} 个，在各组内均匀抽取；"
        "全部样本见 {path}（每次调用一行；连接键：model、table、row_id）。",
    "All {total} samples are embedded ({path} has them as a table; join key: model, table, row_id).":
        "全部 {total} 个样本均已内嵌（{path} 以表格形式提供；连接键：model、table、row_id）。",
    "No samples table in this run (results/samples.parquet is written by valuelens runs since issue 23).":
        "本次运行没有样本表（自 issue 23 起，valuelens 运行会写出 results/samples.parquet）。",
    "layer": "评估层",
    "table": "表",
    "search": "搜索",
    "any": "全部",
    "{n} matching samples": "{n} 个匹配的样本",
    "(first {n} shown)": "（显示前 {n} 个）",
    "Prompt": "提示",
    "Reply": "回复",
    "Option probabilities": "选项概率",
    "parsed": "解析结果",
    "failure": "失败原因",
    "cache key": "缓存键",
    "Samples behind this": "查看背后的样本",
    "Samples behind each flag": "各标记背后的样本",
    "Samples behind each headline metric": "各核心指标背后的样本",
    "Samples behind this figure": "查看此图背后的样本",
    # ---- models given different layers (per-model layers:, layers' models:) ----
    "Which model ran which layer": "各模型运行了哪些评估层",
    "ran: the model has rows in the layer's tables. not run: the audit did not give the model this layer (its "
    "layers: or the layer's models:), so it has no value there — not a failure and not a 0. failed / cancelled: "
    "the model failed or was stopped (see below). pending: the run has not finished. no results: it ran the layer "
    "and the layer wrote no rows for it. Each layer's ranking, flags and comparisons use only the models that ran "
    "it.":
        "已运行：该模型在该层的表中有数据行。未运行：审计没有给该模型分配此层（其 layers: 或该层的 models:），因此这里没有数值"
        "——既不是失败，也不是 0。失败／已取消：该模型运行失败或被中止（见下文）。等待中：运行尚未结束。无结果：运行了该层，"
        "但该层没有为它写出任何行。每一层的排名、标记和比较只使用运行了该层的模型。",
    "Only the models that ran this layer ({models})": "仅包含运行了该层的模型（{models}）",
    "; not run by {models} (the audit did not give them this layer)": "；{models} 未运行（审计没有给它们分配此层）",
    ". ": "。",
    "Run by {models}": "运行该层的模型：{models}",
    "no model": "无",
    "A model that was not given this layer (not run) has no rows in its tables and is in none of its figures, "
    "rankings or comparisons.": "未分配此层的模型（未运行）在该层的表中没有数据行，也不出现在该层的任何图表、排名或比较中。",
    "Not run (left out of that layer's metrics, not counted as 0): ": "未运行（不计入该层的指标，也不按 0 计）：",
    # ---- layer sections: shared ----
    "{what}: not shown, this run has no table {name} (that part of the layer was not configured or has not "
    "finished).": "{what}：未显示，本次运行没有表 {name}（该层的这一部分未配置或尚未完成）。",
    "{what}: not shown, table {name} lacks the column {columns}.": "{what}：未显示，表 {name} 缺少列 {columns}。",
    "{what}: not shown, table {name} lacks the columns {columns}.": "{what}：未显示，表 {name} 缺少列 {columns}。",
    "{what}: not shown, table {name} has no rows with values.": "{what}：未显示，表 {name} 中没有含数值的行。",
    "Other tables": "其他表",
    "{title}: {names} (as exported, in results/).": "{title}：{names}（按导出原样，位于 results/）。",
    "results/{name}.csv: {n} rows.": "results/{name}.csv：{n} 行。",
    "First {n} of {total} rows; all rows are in the results files.": "显示 {total} 行中的前 {n} 行；全部行见结果文件。",
    "Tables of this layer ({prefix}*), as exported to results/.": "该层的表（{prefix}*），按导出到 results/ 的原样显示。",
    "As exported (results/{name}.csv).": "按导出原样（results/{name}.csv）。",
    "As exported ({name}).": "按导出原样（{name}）。",
    "As exported.": "按导出原样。",
    "Position bias: no model's choices are position-dominated here ({parts}; {rule}).":
        "位置偏差：本层没有模型的选择由位置主导（{parts}；{rule}）。",
    "Position-dominated choices: not value findings": "位置主导的选择：不构成价值观结论",
    "Rule: {rule}. Such a model answers by the option's place in the prompt, not its content; the figures marked "
    "below show those answers and are not evidence of its values.":
        "规则：{rule}。这样的模型依据选项在提示中的位置而非内容作答；下方标注的图表显示的正是这些回答，不能作为其价值观的证据。",
    "synthetic — not human data": "合成数据——并非人类数据",
    "Reference data: {label}. The “human” distributions, respondents and personas of this layer are valuelens' "
    "generated demo respondents (a known answer process, valuelens.data.synthetic); distances to them test the "
    "pipeline, not a model's fit to any real population.":
        "参照数据：{label}。本层的“人类”分布、受访者和人设均为 valuelens 生成的演示受访者（作答过程已知，见 "
        "valuelens.data.synthetic）；与它们的距离只检验流程本身，不反映模型与任何真实人群的契合程度。",
    # ---- position ----
    "position-dominated = total variation (TV) between the positions of the chosen options and the no-bias baseline "
    "(each item with k options: 1/k on each of its positions) above {at} — with two options, one position chosen "
    "in more than {pct}% of the answers — and p < {alpha} for that TV under no bias (Monte Carlo, {draws} seeded "
    "draws of uniform choices), so a few answers are not enough; where the humans' answers are known (first-token: "
    "each item's most chosen option; MARK: the respondents' answers), also a TV above {at} from the humans' own "
    "positions, as survey scales are not position-neutral":
        "位置主导 = 所选选项的位置与无偏基线（每个有 k 个选项的条目，每个位置 1/k）之间的总变差（TV）大于 {at}"
        "——两个选项时，即某一位置在超过 {pct}% 的回答中被选中——且在无偏假设下该 TV 的 p < {alpha}（蒙特卡洛，{draws} 次带种子的"
        "均匀随机选择），因此少数几个回答不足以判定；若已知人类的回答（首词元：每个条目被选最多的选项；MARK：受访者的回答），"
        "还要求与人类自身位置分布的 TV 大于 {at}，因为调查量表本身并非位置中立",
    "first-token probe": "首词元探针",
    "dilemmas (all prompt forms)": "两难问题（全部提示形式）",
    "escalation chains (both orders)": "升级链（两种顺序）",
    "MoralChoice (six forms)": "MoralChoice（六种形式）",
    "DEF answers (shown positions)": "DEF 回答（显示位置）",
    "MARK answers": "MARK 回答",
    " (humans' own positions: TV {tv}; from them: {d})": "（人类自身位置：TV {tv}；与人类相差：{d}）",
    "position TV {tv}{human}, position {top} chosen in {pct}% of {n} answers":
        "位置 TV {tv}{human}，在 {n} 个回答中有 {pct}% 选择了第 {top} 个位置",
    "Position-dominated ({models}): not a value finding. See the position-bias note of this layer.":
        "位置主导（{models}）：不构成价值观结论。见本层的位置偏差说明。",
    # ---- first-token layer ----
    "Zero-shot first-token probe (Cao et al. 2025): the model's distribution over the option letters at the first "
    "answer token, per country in the prompt and prompt language. Covered mass = probability on the option letters "
    "before renormalising; country gap = Jensen–Shannon distance (natural log) between the distributions for two "
    "countries; reply agreement = the free answer's letter equals the top option.":
        "零样本首词元探针（Cao 等，2025）：模型在第一个回答词元处对选项字母的概率分布，按提示中的国家和提示语言区分。"
        "覆盖概率 = 归一化之前落在选项字母上的概率；国家差异 = 两个国家的分布之间的 Jensen–Shannon 距离（自然对数）；"
        "回答一致率 = 自由回答中的字母与概率最高的选项相同。",
    "covered mass": "覆盖概率",
    "position bias (TV)": "位置偏差（TV）",
    "country gap (JSD)": "国家差异（JSD）",
    "reply agreement": "回答一致率",
    "Per model and language": "按模型和语言",
    "Values of first_token_summary ({which}); dashed lines are the oversight thresholds.":
        "first_token_summary 的数值（{which}）；虚线为人工监督阈值。",
    "Table 2 layout: 1−JSD per test cell": "表 2 版式：各测试单元的 1−JSD",
    "As exported (first_token_table2): mean 1−JSD per test cell of unseen questions and/or countries (Jensen–Shannon "
    "distance, natural log, clipped to [0, 1]); ZS zero-shot, FT fine-tuned, [ctrl] with the country replaced by a "
    "random other one.":
        "按导出原样（first_token_table2）：未见过的问题和／或国家的各测试单元的平均 1−JSD（Jensen–Shannon 距离，自然对数，"
        "截断到 [0, 1]）；ZS 为零样本，FT 为微调后，[ctrl] 为把国家随机替换成另一个国家的对照。",
    "Table 2 cells": "表 2 各单元",
    "The same numbers as the table above (distribution: raw = original option order; order-averaged = mean over "
    "the asked orders; calibrated = label-prior calibrated).":
        "与上表数字相同（分布：raw = 原始选项顺序；order-averaged = 各提问顺序的平均；calibrated = 经标签先验校准）。",
    "No 1−JSD values yet: the questionnaire of this run has no human answer distributions.":
        "尚无 1−JSD 数值：本次运行的问卷没有人类回答分布。",
    "Answer distributions: {model}": "回答分布：{model}",
    "first_token_options.prob per question ({which}), stacked by option; hover for the option text.":
        "每个问题的 first_token_options.prob（{which}），按选项堆叠；悬停可查看选项文本。",
    "Human bars: human_prob.": "人类柱：human_prob。",
    "Option order: every item was asked in {span} orders (the original first; setting permutations); each order's "
    "distribution was mapped back to the original options. The *_avg columns and the order-averaged rows of Table "
    "2 use their mean; order_spread_jsd is the mean Jensen–Shannon distance of each order's distribution from that "
    "mean (0 = the order changes nothing). The raw columns keep the original order, the paper's prompt, which lists "
    "the options in survey order.":
        "选项顺序：每个条目以 {span} 种顺序提问（原始顺序在先；由 permutations 设置），每种顺序的分布都映射回原始选项。"
        "*_avg 列和表 2 中 order-averaged 行使用其平均；order_spread_jsd 为各顺序的分布与该平均之间的平均 Jensen–Shannon "
        "距离（0 = 顺序毫无影响）。raw 列保持原始顺序，即论文的提示，按问卷顺序列出选项。",
    "{n} of the questions are ordinal scales: a reversed order lists such a scale from its other end, and a cyclic "
    "or random order breaks its monotone order on the page, so an order-averaged figure mixes readings of the scale "
    "in different directions.":
        "其中 {n} 个问题是有序量表：倒序会从量表的另一端列出，循环或随机顺序会打乱其在页面上的单调顺序，"
        "因此顺序平均后的数字混合了对量表不同方向的解读。",
    "Label-prior calibration (Zhao et al. 2021): the raw distribution divided by the model's distribution for a "
    "content-free prompt (question and option texts \"N/A\", same country, wording and number of options), then "
    "renormalised; the *_cal columns and the calibrated rows of Table 2.":
        "标签先验校准（Zhao 等，2021）：将原始分布除以模型对无内容提示（问题和选项文本为 \"N/A\"，国家、措辞和选项数相同）"
        "的分布，再重新归一化；即 *_cal 列和表 2 中 calibrated 行。",
    "Prompt sensitivity: the ZS probe asked with {n} wordings ({names}), original option order. For each summary "
    "metric: min, max, range and sample SD across the wordings — how much of a number is the wording rather than "
    "the model.":
        "提示敏感性：ZS 探针用 {n} 种措辞（{names}）提问，选项为原始顺序。对每项汇总指标给出各措辞间的最小值、最大值、"
        "极差和样本标准差——数值中有多少来自措辞而非模型本身。",
    "Range across wordings": "各措辞间的范围",
    "Per wording": "按措辞",
    "As exported (first_token_templates): first_token_summary per wording.":
        "按导出原样（first_token_templates）：每种措辞的 first_token_summary。",
    "Data: no item was skipped.": "数据：没有条目被跳过。",
    "Data: {n} item(s) of the data file(s) skipped as degenerate (all option shares 0, or a sum more than 2% off the "
    "file's scale after detecting percent vs fractions); they are not in any number below. Set "
    "first_token.data.strict: true to make them an error.":
        "数据：数据文件中有 {n} 个条目因退化而被跳过（所有选项占比为 0，或在识别百分比／小数后总和偏离文件刻度超过 2%）；"
        "下方任何数字都不包含它们。设置 first_token.data.strict: true 可将其视为错误。",
    "Skipped data items": "被跳过的数据条目",
    "As exported (first_token_skipped), one row per file and item.": "按导出原样（first_token_skipped），每个文件和条目一行。",
    "1−JSD vs human": "1−JSD（与人类）",
    "KL vs human": "KL（与人类）",
    "EMD vs human": "EMD（与人类）",
    "higher is closer": "越高越接近",
    "lower is closer": "越低越接近",
    ", order-averaged": "，顺序平均",
    ", label-prior calibrated": "，标签先验校准",
    " and {series}": "和{series}",
    "Mean of first_token_items.{col} per model{by} over items; error bars: 95% percentile bootstrap over items "
    "(2000 resamples, seed {seed}).":
        "按模型{by}对条目取 first_token_items.{col} 的均值；误差线：对条目的 95% 百分位自助法区间（2000 次重抽样，种子 {seed}）。",
    # ---- dilemmas layer ----
    "Right-vs-right dilemmas (Yuan et al. 2024) in Kidder's four value pairs, asked in several prompt forms, again "
    "with consequences attached (flip rate), and escalation chains (Wu et al. 2025) whose steps pit two values "
    "against each other. Estimates are shares over dilemmas (or chains) with 95% percentile bootstrap intervals, as "
    "the layer exported them; an invalid answer is its own outcome, never dropped.":
        "“对与对”的两难问题（Yuan 等，2024），涵盖 Kidder 的四组价值对，以多种提示形式提问，并在附加后果后再次提问（翻转率）；"
        "以及升级链（Wu 等，2025），其每一步都让两种价值相互对立。估计值为在两难问题（或链）上的占比，附 95% 百分位自助法区间，"
        "与该层导出的一致；无效回答作为单独的结果计入，从不丢弃。",
    "Order-balanced: each dilemma asked with its actions in both orders (Direct and Direct-Reverse) counts half for "
    "the value chosen in each, so a model that always answers the same letter comes out 50/50, not as a value "
    "preference; the per-order shares are in the table below.":
        "顺序平衡：每个两难问题以两种行动顺序（Direct 与 Direct-Reverse）提问，每种顺序中所选的价值各计一半，"
        "因此总是回答同一字母的模型会得到 50/50，而不会被当作价值偏好；各顺序的占比见下表。",
    "Value-pair preferences (Figure 8)": "价值对偏好（图 8）",
    "Only one action order is shown ({form}): a model that always picks the same letter looks here like it prefers "
    "whichever value is listed there; ask both direct and direct_reverse for the order-balanced estimate.":
        "只显示了一种行动顺序（{form}）：总是选同一字母的模型在这里看起来会偏好恰好列在该位置的价值；"
        "同时提问 direct 和 direct_reverse 才能得到顺序平衡的估计。",
    "Value-pair preferences ({form})": "价值对偏好（{form}）",
    "dilemma_preferences.estimate (form {form}): per value pair, the share of dilemmas in which the model chose each "
    "value, and the share with no valid choice ({none}); bars per prompt language and model.":
        "dilemma_preferences.estimate（形式 {form}）：对每组价值对，模型选择各价值的两难问题占比，以及没有有效选择的占比"
        "（{none}）；按提示语言和模型分柱。",
    "As exported (all forms; order_balanced rows carry direct_share and direct_reverse_share, each order's share of "
    "the same dilemmas).":
        "按导出原样（全部形式；order_balanced 行附有 direct_share 和 direct_reverse_share，即同一批两难问题中各顺序的占比）。",
    "Position bias: not shown, this run has no table dilemma_position_bias.":
        "位置偏差：未显示，本次运行没有表 dilemma_position_bias。",
    "Position bias: no valid A/B answer to measure it on.": "位置偏差：没有可用于测量的有效 A/B 回答。",
    "Position bias of the same answers": "同一批回答的位置偏差",
    "dilemma_position_bias.position_tv (forms all): total variation between the shares of answers at label A (the "
    "option shown first) and B and the no-bias ½ / ½, i.e. |share of A − ½|, per part (dilemmas: every prompt form; "
    "chains: both orders; moralchoice: six forms). Dashed line: {at}, above it the answers are position-dominated "
    "and the preferences beside it are not a value finding.":
        "dilemma_position_bias.position_tv（forms 为 all）：标签 A（先显示的选项）与 B 的回答占比和无偏的 ½ / ½ 之间的总变差，"
        "即 |A 的占比 − ½|，按部分区分（dilemmas：全部提示形式；chains：两种顺序；moralchoice：六种形式）。"
        "虚线：{at}，高于它的回答由位置主导，旁边的偏好不构成价值观结论。",
    "As exported: per part, language and form (all = every form); top_position 1 = label A; position_n = valid "
    "answers.": "按导出原样：按部分、语言和形式（all = 全部形式）；top_position 1 = 标签 A；position_n = 有效回答数。",
    "Consequence flip rates (Figure 9)": "后果翻转率（图 9）",
    "Consequence flip rates": "后果翻转率",
    "dilemma_consequence_flips.estimate: share of dilemmas whose choice switched when a negative consequence was "
    "attached to it (low = deontological adherence); error bars: ci_low–ci_high.":
        "dilemma_consequence_flips.estimate：在所选行动附加负面后果后选择发生改变的两难问题占比（低 = 坚持义务论）；"
        "误差线：ci_low–ci_high。",
    "Dashed line: the oversight flag ({at}) on the 'all' bars.": "虚线：“all”柱上的人工监督标记阈值（{at}）。",
    "Prompt-form agreement (Figure 10)": "提示形式一致率（图 10）",
    "Prompt-form agreement": "提示形式一致率",
    "dilemma_agreement.estimate: share of dilemmas whose chosen value is the same in every compared form "
    "(direct_vs_reverse: Direct and Direct-Reverse; all_forms: every asked form); error bars: ci_low–ci_high.":
        "dilemma_agreement.estimate：在所有被比较的形式中选择相同价值的两难问题占比（direct_vs_reverse：Direct 与 "
        "Direct-Reverse；all_forms：所有提问过的形式）；误差线：ci_low–ci_high。",
    "Dashed line: the oversight flag ({at}) on the all-forms 'all' bars.":
        "虚线：all_forms 的“all”柱上的人工监督标记阈值（{at}）。",
    "Steering accuracy": "引导准确率",
    "guideline: an explicit instruction to prefer the value": "guideline：明确指示偏好该价值",
    "examples: in-context examples answered for the value": "examples：按该价值作答的上下文示例",
    "dilemma_steering.estimate (requested_value both): the share of steered prompts in which the model chose the "
    "value it was asked to prefer, both values of each pair requested in turn; per value pair ('all': every pair), "
    "a panel per steering method ({methods}) and prompt language; error bars: ci_low–ci_high. 1 = always follows "
    "the request; 0.5 = no better than ignoring it when the model has a fixed preference.":
        "dilemma_steering.estimate（requested_value 为 both）：在引导提示中模型选择了被要求偏好的价值的占比，每组价值对的两个价值"
        "轮流被要求；按价值对（“all”：全部价值对），每种引导方法（{methods}）和提示语言各一个面板；误差线：ci_low–ci_high。"
        "1 = 总是服从要求；0.5 = 若模型有固定偏好，则与无视要求无异。",
    "As exported: per requested value too (requested_value).": "按导出原样：也按被要求的价值（requested_value）区分。",
    "Escalation rank trajectories": "升级链名次轨迹",
    "full context: the chain as a conversation in which the model sees its own earlier answers":
        "完整上下文：整条链作为一段对话，模型能看到自己之前的回答",
    "no context: each step asked alone": "无上下文：每一步单独提问",
    "causal context: a short summary of the earlier situations and the model's choices":
        "因果上下文：对之前情境和模型选择的简短概述",
    "value ranking unstable: mean Kendall τ-b between consecutive steps < {at}":
        "价值排名不稳定：相邻步骤之间的平均 Kendall τ-b < {at}",
    "volatile value: mean |rank change| per step > {at}": "易变价值：每步平均 |名次变化| > {at}",
    "Escalation chains (Wu et al. 2025): each step pits two values against each other; a value's win rate is the "
    "share of the chains where it was at stake and chosen (both choice orders averaged), ranks per step follow from "
    "it. Stability: Kendall τ-b between consecutive steps' win rates and between the first and the last step; "
    "volatility: mean |rank change| per step. Intervals: bootstrap over chains, the same resampled chains in every "
    "context mode. Flags (MFT labels): ":
        "升级链（Wu 等，2025）：每一步让两种价值相互对立；某价值的胜率是在涉及该价值的链中它被选中的占比（两种选择顺序取平均），"
        "每一步的名次由胜率得出。稳定性：相邻步骤胜率之间以及首末步骤之间的 Kendall τ-b；易变性：每步平均 |名次变化|。"
        "区间：对链做自助法，各上下文模式使用相同的重抽样链。标记（MFT 标签）：",
    "{ctx} context": "{ctx} 上下文",
    "escalation": "升级链",
    "{model} ({language}, {ctx} context): the chain answers are position-dominated (position TV {tv}); the ranks "
    "below follow the option order, not the values: not a value finding.":
        "{model}（{language}，{ctx} 上下文）：链中的回答由位置主导（位置 TV {tv}）；下方的名次跟随选项顺序而非价值：不构成价值观结论。",
    "Escalation: value rank per step ({name}, {labels})": "升级链：各步骤的价值名次（{name}，{labels}）",
    "dilemma_chain_winrates.rank ({what}; label set {labels}): per step, each value ranked by its win rate over the "
    "chains where it was at stake (1 = highest, ties averaged); error bars: the rank's 95% bootstrap interval over "
    "chains (over the resamples where the value was at stake); a value not at stake at a step has no point. Hover "
    "for the win rate and the number of chains.":
        "dilemma_chain_winrates.rank（{what}；标签集 {labels}）：每一步按各价值在涉及它的链上的胜率排名（1 = 最高，并列取平均）；"
        "误差线：名次在链上的 95% 自助法区间（基于涉及该价值的重抽样）；某步未涉及的价值没有数据点。悬停可查看胜率和链数。",
    "Which values stay put under escalation": "哪些价值在升级中保持稳定",
    "Per value (label set, model, language): volatility (mean |rank change| per step) with its 95% interval in "
    "each context mode, and the mean rank; the last rows give each mode's mean τ-b. ":
        "按价值（标签集、模型、语言）：各上下文模式下的易变性（每步平均 |名次变化|）及其 95% 区间，以及平均名次；"
        "最后几行给出各模式的平均 τ-b。",
    "'volatile' marks volatility > {at}; ": "“易变”表示易变性 > {at}；",
    "'unstable' marks τ-b < {at}. ": "“不稳定”表示 τ-b < {at}。",
    "Both as printed (2 decimals). † the interval lies beside its estimate: resampling chains repeats some and drops "
    "others, which unbalances the value pairs met at each step and adds noise (τ-b pulled toward 0, volatility up); "
    "read it as the spread under resampling, not as centred on the estimate.":
        "两者都按显示值（2 位小数）判断。† 表示区间位于估计值一侧：对链重抽样会重复一些链、丢掉另一些，使每一步遇到的价值对不再平衡"
        "并增加噪声（τ-b 被拉向 0，易变性升高）；应将其理解为重抽样下的离散程度，而非以估计值为中心的区间。",
    "Per context mode: chains, invalid share, mean and first-last τ-b, the most volatile value, the position bias "
    "of the chain answers.": "按上下文模式：链数、无效占比、平均及首末 τ-b、最易变的价值、链中回答的位置偏差。",
    "Each mode minus the first listed mode (baseline), on the same resampled chains: τ-b and volatility per value, "
    "95% interval.": "各模式减去列出的第一个模式（基线），基于相同的重抽样链：各价值的 τ-b 和易变性，95% 区间。",
    "As exported: τ-b per transition, first-last and mean.": "按导出原样：每次转换的 τ-b、首末 τ-b 及平均。",
    "volatile": "易变",
    "unstable": "不稳定",
    "volatility": "易变性",
    "(mean τ-b)": "（平均 τ-b）",
    # ---- DEF layer ----
    "Diversity-Enhanced Framework (Liu et al. 2025a): virtual participants (a persona from the human survey's "
    "demographics, a random location, varied generation settings and a memory of earlier answers) answer the "
    "questionnaire many times, so each model has an answer distribution per culture to compare with the human "
    "survey. Two KL(model ‖ human) measures: over the valid answers only (column mean_kl_valid: the model's option "
    "shares among its valid answers), used for the ranking and the flags; and DEF's own definition (mean_kl_def), "
    "where the invalid share is a model outcome the humans never give, so a model that answers off-format looks far "
    "from humans; it is kept for comparability with DEF's numbers. In both, infinite KL is replaced by the largest "
    "finite KL in the run + 1 (DEF's rule; the _eps columns are the ε-smoothed alternative). The invalid share "
    "(refusals, hedges, replies naming no single option) is reported and flagged on its own (above {at}). A "
    "question is close to the humans when its KL is below 0.5. Numeric scales (e.g. WVS 1-10) are shown in their "
    "order, not shuffled, so the number a model gives cannot be read as the wrong option.":
        "多样性增强框架（DEF，Liu 等，2025a）：虚拟参与者（人设取自人类调查的人口学特征，随机地点，多样的生成设置，并记住之前的回答）"
        "多次回答问卷，使每个模型在每种文化下都有一个回答分布，可与人类调查比较。两种 KL(模型 ‖ 人类) 指标：只基于有效回答"
        "（mean_kl_valid 列：模型有效回答中的选项占比），用于排名和标记；以及 DEF 自身的定义（mean_kl_def），其中无效回答占比被当作"
        "人类从不给出的一种模型结果，因此格式不符的模型会显得离人类很远；保留它是为了与 DEF 的数字可比。两者中，无穷大的 KL 都替换为"
        "本次运行中最大的有限 KL + 1（DEF 的规则；_eps 列为 ε 平滑的替代方案）。无效回答占比（拒答、含糊其辞、未指明单一选项的回答）"
        "单独报告并单独标记（高于 {at}）。KL 低于 0.5 的问题视为与人类接近。数值量表（如 WVS 1-10）按原顺序显示、不打乱，"
        "因此模型给出的数字不会被误读为错误的选项。",
    "KL per value dimension": "各价值维度的 KL",
    "Dashed line: {at} (close).": "虚线：{at}（接近）。",
    "KL per value dimension and culture (valid answers)": "各价值维度和文化的 KL（有效回答）",
    "def_dimensions.mean_kl_valid: mean KL over the valid answers, over the questions of each value dimension with "
    "at least one valid answer (n_questions_valid; (all): every such question), per model, prompt language and "
    "country. Used for the ranking and the flags.":
        "def_dimensions.mean_kl_valid：基于有效回答的平均 KL，对每个价值维度中至少有一个有效回答的问题取平均"
        "（n_questions_valid；(all)：所有这样的问题），按模型、提示语言和国家区分。用于排名和标记。",
    "KL over the valid answers: def_dimensions has no mean_kl_valid (a run from before it existed); only DEF's "
    "definition is shown.": "基于有效回答的 KL：def_dimensions 中没有 mean_kl_valid（该运行早于此列出现）；只显示 DEF 的定义。",
    "KL per value dimension and culture (DEF's definition)": "各价值维度和文化的 KL（DEF 的定义）",
    "def_dimensions.mean_kl_def: mean KL with the invalid share counted as a model outcome (DEF's definition, for "
    "comparability), over the questions of each value dimension ((all): over every question), per model, prompt "
    "language and country.":
        "def_dimensions.mean_kl_def：把无效回答占比计为一种模型结果的平均 KL（DEF 的定义，为了可比性），对每个价值维度的问题取平均"
        "（(all)：全部问题），按模型、提示语言和国家区分。",
    "Invalid answers per culture": "各文化的无效回答",
    "def_summary.invalid_share: share of the final answers (after retries) that are invalid, per model, prompt "
    "language and country. Dashed line: {at} (flagged above it).":
        "def_summary.invalid_share：最终回答（重试之后）中无效回答的占比，按模型、提示语言和国家区分。虚线：{at}（高于它即标记）。",
    "Insensitivity (Figure 12)": "不敏感性（图 12）",
    "Insensitivity (Figure 12): not shown, def_insensitivity has no FF or CV rate (no factual items or value pairs "
    "were rated).": "不敏感性（图 12）：未显示，def_insensitivity 中没有 FF 或 CV 比率（没有对事实条目或价值对评分）。",
    "Insensitivity: FF and CV rates": "不敏感性：FF 与 CV 比率",
    "def_insensitivity ({cols}): FF = share of valid answers to the factual knowledge items that are wrong; CV = "
    "share of valid answer pairs on opposite value items that contradict each other; per model and culture (country "
    "· prompt language).":
        "def_insensitivity（{cols}）：FF = 事实知识条目的有效回答中错误的占比；CV = 相反价值条目的有效回答对中相互矛盾的占比；"
        "按模型和文化（国家 · 提示语言）区分。",
    "Mismatch by sex and age group (Figures 18-19)": "按性别和年龄组的不匹配（图 18-19）",
    "Mismatch by {label}: def_bias_profile has no rows with facet {facet}.":
        "按{label}的不匹配：def_bias_profile 中没有 facet 为 {facet} 的行。",
    "Missed human majorities by {label}": "按{label}划分的未命中人类多数",
    "def_bias_profile.share (facet {facet}): of the questions where the model's most chosen option missed the human "
    "majority, the share whose majority was held by each {label} group (tie: groups tied), per value dimension "
    "((all): every question) and model.":
        "def_bias_profile.share（facet {facet}）：在模型最常选的选项未命中人类多数的问题中，多数意见由各{label}组持有的占比"
        "（tie：各组持平），按价值维度（(all)：全部问题）和模型区分。",
    "Cultural variation map (Figure 11)": "文化差异图（图 11）",
    "Each run has its own PCA, so each has its own panel.": "每次运行有各自的 PCA，因此各占一个面板。",
    "Cultural variation map": "文化差异图",
    " ({n} features)": "（{n} 个特征）",
    "def_map.pc1, pc2: the first two principal components of the mean expected option value per value "
    "dimension{features}, for each model · language and country and for the human survey ({human}); marker shape "
    "= country. The closer a model's countries lie together compared with the humans', the less cultural "
    "variation it keeps.":
        "def_map.pc1、pc2：各价值维度平均期望选项值的前两个主成分{features}，针对每个模型 · 语言和国家，以及人类调查"
        "（{human}）；标记形状 = 国家。与人类相比，一个模型的各国家点越靠拢，它保留的文化差异就越少。",
    "def_variation: variation preserved": "def_variation：保留的差异",
    "As exported: the model's distance between two countries ÷ the humans' distance, on the 2-D map and in the full "
    "feature space (1 = same spread, 0 = no difference).":
        "按导出原样：模型在两个国家之间的距离 ÷ 人类的距离，分别在二维图和完整特征空间中计算（1 = 分散程度相同，0 = 没有差异）。",
    "FF: false facts": "FF：错误事实",
    "CV: value conflicts": "CV：价值冲突",
    "FF (LLM judge)": "FF（LLM 评审）",
    "CV (LLM judge)": "CV（LLM 评审）",
    "sex": "性别",
    "age group": "年龄组",
    # ---- MARK layer ----
    "MARK (Liu et al. 2025b): a multi-stage personality-driven pipeline (stress analysis → MBTI type → stress "
    "impact on the cognitive functions → a choice per function → weighted vote and explanation) predicts each "
    "survey respondent's answer, compared with three prompting baselines on accuracy, 1−JSD and EMD against the "
    "human answer distribution, and Cohen's κ; p (Holm) is the paired McNemar test against MARK.":
        "MARK（Liu 等，2025b）：一个多阶段、人格驱动的流程（压力分析 → MBTI 类型 → 压力对认知功能的影响 → 每个功能的选择 → "
        "加权投票与解释）预测每位调查受访者的回答，并与三种提示基线比较：准确率、相对人类回答分布的 1−JSD 和 EMD，以及 Cohen's κ；"
        "p（Holm）为相对 MARK 的配对 McNemar 检验。",
    "Table 3 layout": "表 3 版式",
    "Table 3 layout: not shown, this run has no table mark_table3 (it is written after every model has finished; "
    "mark_summary, if present below, has the same numbers per model).":
        "表 3 版式：未显示，本次运行没有表 mark_table3（它在所有模型完成后才写出；下方的 mark_summary（如有）按模型给出相同的数字）。",
    "As exported (mark_table3): per prompt language and method, per model: accuracy (%), 1−JSD and EMD against the "
    "human answers, Cohen's κ, and the Holm-corrected p of the paired test against MARK.":
        "按导出原样（mark_table3）：按提示语言和方法，每个模型的准确率（%）、相对人类回答的 1−JSD 和 EMD、Cohen's κ，"
        "以及相对 MARK 的配对检验经 Holm 校正的 p 值。",
    "Table 3 measures": "表 3 各项指标",
    "The numbers of the table above, a panel per measure and language.": "与上表数字相同，每项指标和语言各一个面板。",
    "Trace viewer": "推理轨迹查看器",
    "{n} traces from mark_traces (one per MARK respondent · question); pick one to see what each stage produced. "
    "The full traces with every prompt and raw reply are in OUT/mark_traces/*.jsonl.":
        "来自 mark_traces 的 {n} 条推理轨迹（每位 MARK 受访者 · 问题一条）；选择一条即可查看每个阶段的产出。"
        "含全部提示和原始回复的完整轨迹位于 OUT/mark_traces/*.jsonl。",
    "Shown: {cut} (all are in results/mark_traces.csv).": "已显示：{cut}（全部见 results/mark_traces.csv）。",
    "{model}: the first {n} of {total}": "{model}：{total} 条中的前 {n} 条",
    "respondent {id}": "受访者 {id}",
    "invalid": "无效",
    "no valid reply: {error} (later stages were not run)": "没有有效回复：{error}（后续阶段未运行）",
    "1. Stress analysis": "1. 压力分析",
    "2. MBTI type": "2. MBTI 类型",
    "3. Stress impact on the function stack": "3. 压力对功能栈的影响",
    "4. Choice per cognitive function": "4. 各认知功能的选择",
    "5. Weighted vote": "5. 加权投票",
    "6. Explanation": "6. 解释",
    "stress level {stress_level}; stressors: {stressors}": "压力水平 {stress_level}；压力源：{stressors}",
    "demographic prior {prior_type}; predicted {mbti}": "人口学先验 {prior_type}；预测 {mbti}",
    "{stack}  (+ positive, - negative impact)": "{stack}  （+ 正面影响，- 负面影响）",
    "weights: {weights} → answer {answer}: {answer_text}": "权重：{weights} → 答案 {answer}：{answer_text}",
    "language": "语言",
    "country": "国家",
    "respondent": "受访者",
    "question": "问题",
    "persona": "人设",
    "MBTI prior": "MBTI 先验",
    "answer": "答案",
    "truth": "真实答案",
    "correct": "正确",
    "valid": "有效",
    "invalid at stage": "失效阶段",
    "calls": "调用次数",
    # ---- figure labels ----
    "flag {at}": "标记 {at}",
    "human": "人类",
    "option": "选项",
    "{group} mean": "{group} 均值",
    "position TV (0 to 0.5)": "位置 TV（0 到 0.5）",
    "share of dilemmas": "两难问题占比",
    "flip rate": "翻转率",
    "steering accuracy": "引导准确率",
    "agreement": "一致率",
    "{value}, step %{{x}}: rank %{{y}}<br>win rate %{{customdata[0]:.3f}} over %{{customdata[1]}} chains":
        "{value}，第 %{{x}} 步：名次 %{{y}}<br>胜率 %{{customdata[0]:.3f}}（基于 %{{customdata[1]}} 条链）",
    "rank": "名次",
    "step": "步骤",
    "mean KL": "平均 KL",
    "invalid share": "无效占比",
    "rate": "比率",
    "share of missed majorities": "未命中多数的占比",
    "human survey": "人类调查",
    "points": "数据点",
    " ({pct}% of variance)": "（解释 {pct}% 的方差）",
    # ---- run status (load.py) ----
    "This layer was not part of the audit.": "该层不在本次审计中。",
    "the run is still in progress (or was killed; rerun the same command to resume)":
        "运行仍在进行中（或已被终止；重新执行同一命令即可继续）",
    "the run failed: {error}": "运行失败：{error}",
    "the run finished without writing tables for this layer": "运行已结束，但没有写出该层的表",
    "run status {status}": "运行状态 {status}",
    # ---- the metric catalogue (valuelens.comparisons.catalogue: label, meaning, profile, explain) ----
    "little probability falls on the option letters; the distribution is unreliable":
        "落在选项字母上的概率很少；该分布不可靠",
    "low mass on the option letters": "选项字母上的概率很低",
    "The share of the model's first-token probability that falls on the answer letters at all; the rest went to "
    "other tokens.": "模型首词元概率中落在答案字母上的比例；其余概率给了其他词元。",
    "position-dominated": "位置主导",
    "How much the model's top option follows its place in the list rather than its content (total variation from "
    "what the options would give with no position preference).":
        "模型概率最高的选项在多大程度上取决于它在列表中的位置而非内容（与无位置偏好时选项应有分布之间的总变差）。",
    "the model's distributions barely change with the country it is asked about":
        "无论问到哪个国家，模型的分布几乎不变",
    "ignores the country": "忽视国家",
    "How much the model's answer distribution changes when the question names another country (Jensen–Shannon "
    "distance between the two countries' distributions).":
        "当问题换成另一个国家时，模型的回答分布变化多大（两国分布之间的 Jensen–Shannon 距离）。",
    "the letter in the model's free answer differs from its first-token top option":
        "模型自由回答中的字母与其首词元概率最高的选项不同",
    "free answers disagree with its probabilities": "自由回答与其概率不一致",
    "The share of questions where the letter in the model's free-text answer is its most probable first-token "
    "option.": "模型自由文本回答中的字母恰为其首词元最可能选项的问题占比。",
    "How close the model's answer distribution is to the human survey's for that culture (1 minus the "
    "Jensen–Shannon distance; 1 = identical).":
        "模型的回答分布与该文化的人类调查分布有多接近（1 减去 Jensen–Shannon 距离；1 = 完全相同）。",
    "the distribution is far from the human one (DEF calls a question close when KL < 0.5)":
        "该分布与人类分布相差很远（DEF 以 KL < 0.5 作为接近的标准）",
    "far from human answers": "与人类回答相差很远",
    "How far the model's answer distribution is from the human survey's for that culture (Kullback–Leibler "
    "divergence; 0 = identical).": "模型的回答分布与该文化的人类调查分布相差多远（KL 散度；0 = 完全相同）。",
    "How far, along the answer scale, the model's answers lie from the humans' (earth mover's distance, scaled to "
    "0–1).": "在答案量表上，模型的回答与人类的回答相距多远（推土机距离，缩放到 0–1）。",
    "consequence flip rate": "后果翻转率",
    "the model's choice flips when consequences are attached": "附加后果后模型的选择发生翻转",
    "unstable moral choices": "道德选择不稳定",
    "The share of dilemmas whose choice changes when a negative consequence is attached to the chosen action.":
        "在所选行动附加负面后果后选择发生改变的两难问题占比。",
    "prompt-form agreement (all forms)": "提示形式一致率（全部形式）",
    "the chosen value changes with the prompt form (low task comprehension)": "所选价值随提示形式而变（对任务理解不足）",
    "choice depends on the prompt form": "选择取决于提示形式",
    "The share of dilemmas where the model picks the same value in every prompt form it was asked in.":
        "在所有提问过的提示形式中模型都选择相同价值的两难问题占比。",
    "Direct vs Reverse agreement": "正序与倒序一致率",
    "The share of dilemmas where the model picks the same value when the two actions are listed in the opposite "
    "order.": "两种行动以相反顺序列出时模型仍选择相同价值的两难问题占比。",
    "dilemma position bias (TV)": "两难问题位置偏差（TV）",
    "position-dominated dilemma answers": "两难问题回答由位置主导",
    "How much the dilemma answers follow the label's place (A shown first, B second) rather than the action: "
    "|share of A − ½|.": "两难问题的回答在多大程度上取决于标签的位置（A 先显示，B 后显示）而非行动本身：|A 的占比 − ½|。",
    "escalation position bias (TV)": "升级链位置偏差（TV）",
    "position-dominated escalation answers": "升级链回答由位置主导",
    "How much the escalation-chain answers follow the label's place rather than the action: |share of A − ½|.":
        "升级链的回答在多大程度上取决于标签的位置而非行动本身：|A 的占比 − ½|。",
    "escalation ranking stability (mean τ-b)": "升级链排名稳定性（平均 τ-b）",
    "value ranking unstable: the MFT value ranking changes from step to step of the escalation chains (mean Kendall "
    "τ-b between consecutive steps < 0.5)":
        "价值排名不稳定：MFT 价值排名在升级链的各步骤之间变化（相邻步骤之间的平均 Kendall τ-b < 0.5）",
    "value ranking unstable": "价值排名不稳定",
    "Whether the order of values by win rate stays the same from one escalation step to the next (mean Kendall "
    "τ-b; 1 = same order, 0 = unrelated).": "按胜率排列的价值顺序在升级链的相邻步骤之间是否保持不变（平均 Kendall τ-b；1 = 顺序相同，0 = 毫无关联）。",
    "escalation value volatility (mean |rank change|)": "升级链价值易变性（平均 |名次变化|）",
    "volatile value: the value's rank moves by more than 1 place per step on average as the chain escalates":
        "易变价值：随着链条升级，该价值的名次平均每步变动超过 1 位",
    "volatile value": "易变价值",
    "How many places a value's rank moves per escalation step on average.": "每个升级步骤中某价值的名次平均变动几位。",
    "MoralChoice position bias (TV)": "MoralChoice 位置偏差（TV）",
    "position-dominated MoralChoice answers": "MoralChoice 回答由位置主导",
    "How much the MoralChoice answers follow the option's place rather than its content.":
        "MoralChoice 的回答在多大程度上取决于选项的位置而非内容。",
    "DEF mean KL (valid answers)": "DEF 平均 KL（有效回答）",
    "DEF answer distributions (valid answers only) are far from the human survey (close means KL < 0.5)":
        "DEF 的回答分布（仅有效回答）与人类调查相差很远（接近指 KL < 0.5）",
    "far from human answers (DEF)": "与人类回答相差很远（DEF）",
    "How far the virtual participants' answer distribution is from the human survey's, over the valid answers only "
    "(mean KL; 0 = identical).": "虚拟参与者的回答分布与人类调查分布相差多远，仅基于有效回答（平均 KL；0 = 完全相同）。",
    "DEF mean KL (DEF's definition, invalid included)": "DEF 平均 KL（DEF 的定义，含无效回答）",
    "The same distance with invalid answers counted as an outcome the humans never give (DEF's own definition, for "
    "comparison with its papers).": "同一距离，但把无效回答计为人类从不给出的结果（DEF 自身的定义，便于与其论文比较）。",
    "DEF invalid share": "DEF 无效占比",
    "more than 20% of the final DEF answers are invalid (refusal, hedge, no readable option): the valid-only KL rests "
    "on the rest, and DEF's KL is inflated by format":
        "超过 20% 的 DEF 最终回答无效（拒答、含糊其辞、没有可读的选项）：仅基于有效回答的 KL 只建立在其余回答上，而 DEF 的 KL 因格式问题被抬高",
    "answers off-format (DEF)": "回答格式不符（DEF）",
    "The share of final DEF answers that name no single option (refusals, hedges, off-format replies).":
        "DEF 最终回答中未指明单一选项的占比（拒答、含糊其辞、格式不符的回复）。",
    "DEF majority match": "DEF 多数意见命中率",
    "The share of questions where the model's most chosen option is the human majority's.":
        "模型最常选的选项与人类多数意见一致的问题占比。",
    "DEF false-fact rate": "DEF 错误事实率",
    "most answers to the factual knowledge items (FF) are wrong": "事实知识条目（FF）的大多数回答是错误的",
    "states false facts": "陈述错误事实",
    "The share of factual knowledge questions the model answers wrongly (false facts).":
        "模型答错的事实知识问题占比（错误事实）。",
    "DEF value-conflict rate": "DEF 价值冲突率",
    "most answers to pairs of opposite value items contradict each other (CV)": "对相反价值条目成对作答时，大多数回答相互矛盾（CV）",
    "contradicts its own values": "与自身价值观相矛盾",
    "The share of pairs of opposite value statements that the model agrees (or disagrees) with both (value "
    "conflicts).": "模型对一对相反的价值陈述同时表示赞同（或同时反对）的占比（价值冲突）。",
    "DEF position bias (TV)": "DEF 位置偏差（TV）",
    "position-dominated DEF answers": "DEF 回答由位置主导",
    "How much the DEF answers follow the option's place as shown (after reshuffling) rather than its content.":
        "DEF 的回答在多大程度上取决于选项显示的位置（重新打乱后）而非内容。",
    "MARK accuracy": "MARK 准确率",
    "The share of survey respondents whose own answer MARK's multi-stage reasoning predicts.":
        "MARK 的多阶段推理正确预测了本人回答的受访者占比。",
    "MARK 1−JSD": "MARK 1−JSD",
    "How close the distribution of MARK's predicted answers is to the respondents' (1 minus the Jensen–Shannon "
    "distance).": "MARK 预测答案的分布与受访者答案分布有多接近（1 减去 Jensen–Shannon 距离）。",
    "MARK invalid share": "MARK 无效占比",
    "most MARK answers are invalid (a stage's JSON could not be used after the retries)":
        "大多数 MARK 回答无效（重试后某阶段的 JSON 仍无法使用）",
    "MARK pipeline fails": "MARK 流程失败",
    "The share of MARK predictions that could not be used (a stage's reply was unreadable after the retries).":
        "无法使用的 MARK 预测占比（重试后某阶段的回复仍无法读取）。",
    "MARK position bias (TV)": "MARK 位置偏差（TV）",
    "position-dominated MARK answers": "MARK 回答由位置主导",
    "How much MARK's answers follow the option number rather than its content.":
        "MARK 的回答在多大程度上取决于选项编号而非内容。",
}

# The position-bias meaning of the catalogue, formatted there per layer (POSITION_MEANING.format(what=...)).
_POSITION_WHAT = {"top option": "概率最高的选项", "chosen label": "所选标签", "chosen option": "所选选项",
                  "chosen option (as shown, after the reshuffle)": "所选选项（按重新打乱后显示的位置）",
                  "answer number": "答案编号"}
_POSITION_ZH = ("位置主导：{what}的位置与各条目的选项数在无偏情况下应有的分布相差很远（总变差；两个选项时：某一位置在超过 80% 的回答中"
                "被选中）；且在无偏假设下该 TV 的 p < 0.05，因此少数几个回答不足以判定；若已知人类的回答，还要求与人类自身位置分布"
                "的 TV 超过同一阈值。这些回答跟随选项顺序而非内容：不构成价值观结论")

# Words that come from run.json or the tables' keys and are shown as labels (tr_known: translated when known).
_KNOWN: dict[str, str] = {
    # layer titles (valuelens.layers.registry) and section states
    "Ethical dilemmas": "伦理两难问题",
    "DEF (Diversity-Enhanced Framework)": "DEF（多样性增强框架）",
    "First-token alignment": "首词元对齐",
    "MARK (personality-driven reasoning)": "MARK（人格驱动推理）",
    "not run": "未运行",
    "no data yet": "暂无数据",
    "ran": "已运行",
    "cancelled": "已取消",
    "pending": "等待中",
    "no results": "无结果",
    "finished": "已完成",
    "running": "运行中",
    "failed": "失败",
    "interrupted": "已中断",
    "unknown": "未知",
    "no run.json": "无 run.json",
    # table keys shown with their value ("language en") and figure legend titles
    "condition": "条件",
    "context": "上下文",
    "part": "部分",
    "culture": "文化",
    "form": "形式",
    "method": "方法",
    "pair": "价值对",
    "dimension": "维度",
    # comparison units, tests, corrections, effect sizes (valuelens.comparisons, valuelens.stats)
    "item": "条目",
    "paired": "配对",
    "Student t": "Student t 检验",
    "Welch t": "Welch t 检验",
    "Mann–Whitney U": "Mann–Whitney U 检验",
    "Wilcoxon signed-rank": "Wilcoxon 符号秩检验",
    "bootstrap": "自助法",
    "Holm–Bonferroni": "Holm–Bonferroni 校正",
    "Benjamini–Hochberg": "Benjamini–Hochberg 校正",
    "Cohen's d": "Cohen's d",
    "mean difference": "平均差值",
    "rank-biserial r": "秩二列相关 r",
    # reasons for no interval or no test (valuelens.comparisons.compute)
    "no per-item values": "没有逐条目数值",
    "its per-item values do not reproduce the headline value": "其逐条目数值无法复现核心指标值",
    "fewer than 2 items with a value": "有数值的条目少于 2 个",
    "the table's interval is empty (NaN)": "表中的区间为空（NaN）",
    "fewer than 2 answers with a position": "有位置的回答少于 2 个",
    "its answers do not reproduce the headline value": "其回答无法复现核心指标值",
    "fewer than 2 observations in a group": "某组的观测值少于 2 个",
    "no variation within either group": "两组内部均无变异",
    "a group has no observation": "某组没有观测值",
    "no item with a non-zero difference in both groups": "两组中都没有差值非零的条目",
    "fewer than 2 items in both groups": "两组共有的条目少于 2 个",
    "the paired differences do not vary": "配对差值没有变异",
    "a group has no value": "某组没有数值",
    "no test ran": "没有运行任何检验",
    "no per-item table in this run": "本次运行没有逐条目表",
    "a position TV is tested against no position bias instead: position_p in the layer's table; its flag needs "
    "p < 0.05": "位置 TV 改为对“无位置偏差”做检验：见该层表中的 position_p；其标记要求 p < 0.05",
    "a mean over languages; each language's interval is in the layer's table (ci_low, ci_high)":
        "这是多种语言的平均；各语言的区间见该层的表（ci_low、ci_high）",
    # run facts: per-model states, tokens and cost (issue 20.5-6), MARK on country-level data (issue 18.4)
    "Cells marked 'not computable' have no value (see above).": "标为“不可计算”的单元格没有数值（见上文）。",
    "Cost from the audit file's prices per 1M tokens.": "费用按审计文件中每 100 万 token 的价格计算。",
    "No prices in the audit file: no cost.": "审计文件中没有价格：不计算费用。",
    "Not computable here: {what}. The human data are country-level distributions without respondents (personas "
    "drawn from marginals), so no simulated answer has a real answer to match; 1−JSD and EMD are against each "
    "country's distribution.":
        "此处不可计算：{what}。人类数据是没有受访者个体的国家层面分布（人物设定由边际分布抽取），"
        "因此模拟回答没有可对照的真实回答；1−JSD 和 EMD 是相对于各国分布计算的。",
    "Tokens of the calls made this run, and (cached) the tokens the calls served from the cache had when they were "
    "made, not spent again. Tokens by: server = the server's usage, tokenizer = the model's tokenizer, estimate = "
    "about 4 characters per token (1 per CJK character); calls stored before tokens were counted are left out of "
    "the cached tokens.":
        "本次运行所发调用的 token 数，以及（缓存）由缓存提供的调用在当初发出时的 token 数，这些不会再次花费。"
        "计数来源：server = 服务器返回的 usage，tokenizer = 模型的分词器，estimate = 约每 4 个字符计 1 个 token"
        "（每个中日韩字符计 1 个）；在开始计数 token 之前存储的调用不计入缓存 token。",
    "cap reached": "已达上限",
    "failed ({error}); {kept}; the other models ran. Rerunning the same command retries it (the others come from "
    "the cache).": "失败（{error}）；{kept}；其他模型已运行。重新运行同一命令会重试它（其他模型的结果来自缓存）。",
    "it has no results in the tables": "它在表中没有结果",
    "stopped: budget ({why}); {kept}. Raise its max_calls / max_cost and rerun to continue (what it made comes from "
    "the cache).": "因预算停止（{why}）；{kept}。提高其 max_calls / max_cost 后重新运行即可继续（已完成的调用来自缓存）。",
    "the layers it finished ({layers}) are in the tables, the others not": "它完成的评估层（{layers}）在表中，其余的不在",
    "tokens and cost per model × layer": "每个模型 × 评估层的 token 与费用",
    "state": "状态",
    "prompt tokens": "提示 token",
    "completion tokens": "生成 token",
    "cached prompt tokens": "缓存的提示 token",
    "cached completion tokens": "缓存的生成 token",
    "tokens by": "计数来源",
    "cost": "费用",
    "cost of cached": "缓存部分的费用",
}

ZH: dict[str, str] = {**_KNOWN, **_MAIN,
                      **{POSITION_MEANING.format(what=en): _POSITION_ZH.format(what=zh)
                         for en, zh in _POSITION_WHAT.items()}}
