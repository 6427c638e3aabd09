import sys


def _main(argv) -> int:
    if argv[1:2] == ["demo"]:
        from fastflow._demo import main

        main()
        return 0
    print("usage: python -m fastflow demo", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv))
