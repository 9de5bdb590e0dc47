from sqish_ext.experiment.cli import main

main()
