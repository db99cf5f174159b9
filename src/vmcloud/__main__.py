from vmcloud.cli import main

main()
