from dermsight.cli import main

main()
