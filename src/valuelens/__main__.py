from valuelens.cli import main

main()
