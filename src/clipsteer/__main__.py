"""`python -m clipsteer <command>`: the same CLI as `clipsteer`, in the form torchrun launches (`-m clipsteer`)."""

from clipsteer.cli import main

if __name__ == "__main__":
    main()
