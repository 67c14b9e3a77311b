from asyncgen.cli import main

main()
