"""Print the size of the fault matrix at the end of the run."""

from dpmtest import report_counts


def pytest_terminal_summary(terminalreporter, config):
    report_counts(terminalreporter, config, 'fault')
