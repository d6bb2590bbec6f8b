"""The error every data check raises, kept apart so that any module (DICOM, transforms) can raise it."""


class DataError(ValueError):
    """A dataset problem a user can fix: the message names the case, the file and what was expected."""
