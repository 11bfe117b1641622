"""Error types shared by every job, and the exit statuses the CLI maps them to.

A ``UserError`` is a mistake in the input or the arguments: retrying cannot help, so the CLI exits with
status 2 and the DAG fails the task at once. Verification that finds bad data exits 3, also final. Anything
else is treated as transient (exit 1, retried). A job asked to say so exits 99 when its work was already
complete (``convert-subset --already_complete_exit 99``): the DAG marks such a task skipped.
"""

EXIT_OK = 0
EXIT_FAILED = 1  # transient or unexpected failure: safe to retry
EXIT_USER_ERROR = 2  # bad input or arguments: do not retry
EXIT_CHECK_FAILED = 3  # the job ran, and the data failed its checks (verify): retrying cannot help
EXIT_ALREADY_COMPLETE = 99  # the work was already complete (convert-subset, when asked): the task is skipped
NO_RETRY_EXITS = frozenset({EXIT_USER_ERROR, EXIT_CHECK_FAILED})


class UserError(Exception):
    """Bad input or arguments; the message names the file/record/parameter at fault."""


class BadDataError(Exception):
    """The input's bytes are not what their listing promised (size or hash): retrying reads the same wrong data,
    so the CLI exits 3 and the DAG fails the task at once. The message names the file."""


class TransientError(Exception):
    """A network source stayed unreachable through its retries (timeouts, resets, 5xx): the CLI prints this
    one line naming the host and the file or call, and exits 1 so the DAG retries the task later."""
