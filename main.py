"""GAN Atlas. ``python main.py`` opens the editor; ``python main.py --help`` lists the commands."""

from cli.main import exit_process, main

if __name__ == "__main__":
    exit_process(main())
