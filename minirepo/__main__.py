from minirepo.cli import main

main()
