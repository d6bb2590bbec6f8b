"""``python -m custom_nets.data synthesize | datalist | montage ...`` (a fire CLI; ``--help`` on each)."""

import functools

import fire

from custom_nets.data.datalist import write_datalist
from custom_nets.data.montage import montage
from custom_nets.data.synthetic import synthesize


def _command(function):
    """fire prints return values; the commands report what they wrote themselves."""

    @functools.wraps(function)
    def run(*args, **kwargs):
        function(*args, **kwargs)

    return run


def main() -> None:
    fire.Fire(
        {
            name: _command(f)
            for name, f in (("synthesize", synthesize), ("datalist", write_datalist), ("montage", montage))
        }
    )


if __name__ == "__main__":
    main()
