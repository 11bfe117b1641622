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


class MissingTextField(UserError):
    """A record, file or dataset without the text field. It carries what was found (``field``, the ``available``
    columns or fields, ``location``: the file and record or the dataset), so the caller names the option it was
    given: ``str()`` says ``--text_field`` (convert); :meth:`naming` words it for another command (the plan's
    domain: ``--domain <path>`` and ``--domain_text_field``).

    ``container``: ``column`` (parquet, ``datasets``), ``field`` (a ``datasets`` row) or ``record`` (a JSON
    record). A tokenizer worker raises it without a location (:meth:`at` adds it in the parent): it pickles.
    """

    def __init__(self, field: str, available, container: str = "column", location: str = "",
                 option: str = "--text_field", where: str = "") -> None:
        self.field, self.available, self.container = field, tuple(available), container
        self.location, self.option, self.where = location, option, where
        super().__init__(self.message)

    @property
    def problem(self) -> str:
        """What is wrong, without where or what to do: ``no 'text' column (columns: package, body)``."""
        names = ", ".join(self.available) or "none"
        if self.container == "column":
            return f"no '{self.field}' column (columns: {names})"
        subject = "record has no" if self.container == "record" else "no"
        return f"{subject} '{self.field}' field (fields: {names})"

    @property
    def message(self) -> str:
        """The whole message: ``[where: ][location: ]problem; name the text field with <option>``."""
        head = "".join(f"{part}: " for part in (self.where, self.location) if part)
        return f"{head}{self.problem}; name the text field with {self.option}"

    def at(self, location: str) -> "MissingTextField":
        """The same error, found at ``location`` (a file, and its record)."""
        return MissingTextField(self.field, self.available, self.container, location, self.option, self.where)

    def naming(self, option: str, where: str = "") -> "MissingTextField":
        """The same error for a command whose text-field option is ``option``, its input named by ``where``
        (e.g. ``--domain corpus.parquet``)."""
        return MissingTextField(self.field, self.available, self.container, self.location, option, where)

    def __reduce__(self):
        return MissingTextField, (self.field, self.available, self.container, self.location, self.option,
                                  self.where)
