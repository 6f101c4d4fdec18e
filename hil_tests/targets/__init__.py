"""The HIL targets: ``EmulatorTarget`` (targets/emulator.py) and ``BoardTarget`` (targets/board.py),
both implementing ``Target`` (targets/base.py); ``make_target(options, workdir)`` picks one."""


def make_target(opts, workdir):
    """``opts``: the hil options (conftest.HilOptions); a board target when opts.port is set."""
    if opts.port:
        from hil_tests.targets.board import BoardTarget

        return BoardTarget(opts, workdir)
    from hil_tests.targets.emulator import EmulatorTarget

    return EmulatorTarget(workdir)
