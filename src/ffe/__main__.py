from ffe.cli.app import main

main()
