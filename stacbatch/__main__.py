from stacbatch.cli import main

main()
