"""Prebuild the CUDA plugins of torch_utils.ops ahead of training, e.g. on a login node or in a container image:

    python -m torch_utils.ops.prebuild --build

The build machinery (architectures, locks, error messages) is torch_utils/custom_ops.py; this command sits above
both it and the ops, so that neither imports the other's user.
"""

import argparse
import sys
import time

from torch_utils import custom_ops
from torch_utils.ops import bias_act, upfirdn2d

#----------------------------------------------------------------------------

def plugins():
    """The OptionalPlugins of torch_utils.ops."""
    return [bias_act._plugin, upfirdn2d._plugin]


def main(argv=None):
    parser = argparse.ArgumentParser(prog='python -m torch_utils.ops.prebuild',
        description='Build the CUDA plugins (bias_act, upfirdn2d) ahead of training, e.g. on a login node or in a container image. '
            f'Architectures: {custom_ops.ARCH_ENV_VAR} when set, else the visible GPUs, else a default list of what nvcc supports.')
    parser.add_argument('--build', action='store_true', help='build both plugins (a finished build is only checked)')
    parser.add_argument('--verbose', action='store_true', help='print the compiler command lines and output')
    args = parser.parse_args(argv)
    if not args.build:
        parser.error('nothing to do: pass --build')
    custom_ops.verbosity = 'full' if args.verbose else 'brief'
    failed = 0
    for plugin in plugins():
        start = time.time()
        try:
            module = custom_ops.get_plugin(**plugin._args)
        except custom_ops.PluginBuildError as err:
            print(f'error: {err}', file=sys.stderr)
            failed += 1
        else:
            print(f'{plugin._args["module_name"]}: {module.__file__} ({time.time() - start:.0f} s)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

#----------------------------------------------------------------------------
