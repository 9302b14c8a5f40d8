"""Print the number of fuzz cases at the end of the run."""

from dpmtest import report_counts


def pytest_terminal_summary(terminalreporter, config):
    report_counts(terminalreporter, config, 'fuzz')
