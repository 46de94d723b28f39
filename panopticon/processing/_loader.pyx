# cython: language_level=3, boundscheck=False, wraparound=False
"""The decoders' fast path, compiled: a message parsed and its known fields loaded, when every one is plainly
valid.

Why compiled: as Python generated per schema, the ~16 checks of a span cost about 3.3 us, the largest share
of its decoding once everything else had been made cheap; here they cost about 1.5 (bench/, the hot path).
What it may answer is decided in schemas.py: `_rule_of` turns each marshmallow field into a `Rule` (its
kind, limits, id characters, choices, aliases, default, spellings), so the rules are read from the schema
and the model, not written here. Whenever a value is not plainly valid the answer is None and marshmallow
decides; tests/unit/processing/test_fast_path.py holds every answer equal to marshmallow's.
Two checks have a C shortcut that may only say yes, and otherwise ask the Python check: an id of ASCII
characters from the allowed table, and a time in our own format (`YYYY-MM-DDTHH:MM:SS.mmmZ`); their tests
are in test_loader.py.
"""

cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object)
    void* PyUnicode_DATA(object)
    Py_ssize_t PyUnicode_GET_LENGTH(object)
    object PyUnicode_FromStringAndSize(const char*, Py_ssize_t)

import orjson

from panopticon.model.times import iso_ms as _python_iso_ms

cdef object _ABSENT = object()
cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError

cdef enum:
    _ID = 0
    _UPPER_CHOICE = 1
    _UPPER_TEXT = 2
    _TEXT = 3
    _TIME = 4
    _NUMBER = 5
    _OBJECT = 6

# What a Rule checks (`kind`), for schemas.py.
ID = _ID  # a string that `check` (the id pattern's match) accepts
UPPER_CHOICE = _UPPER_CHOICE  # a string, upper-cased, then aliased, then one of `choices`
UPPER_TEXT = _UPPER_TEXT  # a string, upper-cased, then min_chars..max_chars long
TEXT = _TEXT  # a string min_chars..max_chars long
TIME = _TIME  # what `check` (parse_time) reads
NUMBER = _NUMBER  # an int (or a float unless integral_only) in low..high
OBJECT = _OBJECT  # a JSON object, kept as parsed


cdef class Rule:
    """One field as the fast path reads it: its key, its camelCase spelling (or None), the name it loads to,
    whether it is required, its default, whether "" means absent, and its check."""

    cdef readonly str key
    cdef readonly object camel
    cdef readonly str name
    cdef readonly bint required
    cdef readonly object default
    cdef readonly bint call_default
    cdef readonly bint blank_is_absent
    cdef readonly int kind
    cdef readonly Py_ssize_t min_chars
    cdef readonly Py_ssize_t max_chars
    cdef readonly object check
    cdef readonly bytes allowed
    cdef readonly dict aliases
    cdef readonly frozenset choices
    cdef readonly bint integral_only
    cdef readonly object low
    cdef readonly object high
    cdef const unsigned char* _allowed

    def __init__(self, str key, camel, str name, bint required, default, bint blank_is_absent, int kind, *,
                 Py_ssize_t min_chars=0, Py_ssize_t max_chars=0, check=None, bytes allowed=None,
                 dict aliases=None, frozenset choices=None, bint integral_only=False, low=None, high=None):
        if not _ID <= kind <= _OBJECT:
            raise ValueError(f"{name}: unknown rule kind {kind}")
        if kind in (_ID, _TIME) and not callable(check):
            raise ValueError(f"{name}: an id or time rule needs its check")
        if kind == _ID and (allowed is None or len(allowed) != 128 or max_chars < 1):
            raise ValueError(f"{name}: an id rule needs its 128-entry ASCII table and its longest length")
        if kind == _UPPER_CHOICE and choices is None:
            raise ValueError(f"{name}: a choice rule needs its choices")
        if kind == _NUMBER and (low is None or high is None):
            raise ValueError(f"{name}: a number rule needs its bounds")
        self.key = key
        self.camel = camel
        self.name = name
        self.required = required
        self.default = default
        self.call_default = callable(default)
        self.blank_is_absent = blank_is_absent
        self.kind = kind
        self.min_chars = min_chars
        self.max_chars = max_chars
        self.check = check
        self.allowed = allowed if allowed is not None else bytes(128)
        self._allowed = self.allowed
        self.aliases = aliases if aliases is not None else {}
        self.choices = choices
        self.integral_only = integral_only
        self.low = low
        self.high = high


def message(object raw, Py_ssize_t max_bytes, tuple rules, tuple http_rules):
    """(loaded fields, parsed message) of `raw`, the bytes of one JSON object of at most `max_bytes`, when it
    parses and `fields` answers; else None (and the Python path, which parses again, says why)."""
    cdef Py_ssize_t size
    cdef object parsed
    cdef dict loaded
    if type(raw) is not bytes:
        return None
    size = len(<bytes>raw)
    if size == 0 or size > max_bytes:
        return None
    try:
        parsed = _loads(raw)
    except _JSONDecodeError:
        return None
    if type(parsed) is not dict:
        return None
    loaded = _fields(rules, http_rules, <dict>parsed)
    return None if loaded is None else (loaded, parsed)


def fields(tuple rules, tuple http_rules, dict source):
    """`rules`' fields of `source` and, when `http_rules` is given, its `http` object's members as http_*
    fields; None when any is not plainly valid, or `http` is not an object."""
    return _fields(rules, http_rules, source)


cdef dict _fields(tuple rules, tuple http_rules, dict source):
    cdef dict loaded = _load(rules, source), members
    cdef object http
    if loaded is None or http_rules is None:
        return loaded
    http = source.get("http")
    if http is None:
        http = {}
    elif type(http) is not dict:
        return None
    members = _load(http_rules, <dict>http)
    if members is None:
        return None
    loaded.update(members)
    loaded["http"] = None  # the flattened object's own field loads to its default, as in the schema
    return loaded


cdef dict _load(tuple rules, dict source):
    """`rules`' fields of `source`, loaded into a new dict, or None when any is not plainly valid (or is sent in
    both spellings)."""
    cdef dict loaded = {}
    cdef Rule rule
    cdef object value
    for rule in rules:
        value = source.get(rule.key, _ABSENT)
        if rule.camel is not None and rule.camel in source:
            if value is not _ABSENT:
                return None
            value = source[rule.camel]
        if value is _ABSENT or value is None or (rule.blank_is_absent and type(value) is str and not value):
            if rule.required:
                return None
            loaded[rule.name] = rule.default() if rule.call_default else rule.default
            continue
        value = _checked(rule, value)
        if value is _ABSENT:
            return None
        loaded[rule.name] = value
    return loaded


cdef object _checked(Rule rule, object value):
    """The loaded value, or _ABSENT when it is not plainly valid. Exact types: orjson makes no subclasses, and
    that keeps bool out of the numbers."""
    cdef Py_ssize_t size
    cdef int kind = rule.kind
    cdef object moment
    if kind == _ID:
        if type(value) is not str:
            return _ABSENT
        if _is_id(rule, <str>value) or rule.check(value) is not None:
            return value
        return _ABSENT
    if kind == _TEXT:
        if type(value) is not str:
            return _ABSENT
        size = PyUnicode_GET_LENGTH(value)
        return value if rule.min_chars <= size <= rule.max_chars else _ABSENT
    if kind == _UPPER_CHOICE:
        if type(value) is not str:
            return _ABSENT
        value = (<str>value).upper()
        value = rule.aliases.get(value, value)
        return value if value in rule.choices else _ABSENT
    if kind == _UPPER_TEXT:
        if type(value) is not str:
            return _ABSENT
        value = (<str>value).upper()
        size = PyUnicode_GET_LENGTH(value)
        return value if rule.min_chars <= size <= rule.max_chars else _ABSENT
    if kind == _TIME:
        moment = _own_time(value)
        if moment is None:
            moment = rule.check(value)
        return _ABSENT if moment is None else moment
    if kind == _NUMBER:
        if not (type(value) is int or (type(value) is float and not rule.integral_only)):
            return _ABSENT
        return value if rule.low <= value <= rule.high else _ABSENT
    return value if type(value) is dict else _ABSENT  # _OBJECT


cdef bint _is_id(Rule rule, str value):
    """True only when `value` is 1..max_chars ASCII characters of the allowed table (else the pattern decides)."""
    cdef Py_ssize_t size = PyUnicode_GET_LENGTH(value), i
    cdef const unsigned char* chars
    if size < 1 or size > rule.max_chars or not PyUnicode_IS_ASCII(value):
        return False
    chars = <const unsigned char*>PyUnicode_DATA(value)
    for i in range(size):
        if not rule._allowed[chars[i]]:
            return False
    return True


# --- our own time format ----------------------------------------------------------------------------------

cdef int[13] _MONTH_DAYS
_MONTH_DAYS[:] = [0, 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31]


cdef object _own_time(object value):
    """Epoch milliseconds (float) of `YYYY-MM-DDTHH:MM:SS.mmmZ` with ASCII digits and a real date and time,
    else None: what parse_time answers for that format, without its calls."""
    cdef const unsigned char* c
    cdef int year, month, day, hour, minute, second, millis, days_in_month
    if type(value) is not str or PyUnicode_GET_LENGTH(value) != 24 or not PyUnicode_IS_ASCII(value):
        return None
    c = <const unsigned char*>PyUnicode_DATA(value)
    if c[4] != c'-' or c[7] != c'-' or c[10] != c'T' or c[13] != c':' or c[16] != c':' or c[19] != c'.' \
            or c[23] != c'Z':
        return None
    year, month, day = _digits(c, 4), _digits(c + 5, 2), _digits(c + 8, 2)
    hour, minute, second, millis = _digits(c + 11, 2), _digits(c + 14, 2), _digits(c + 17, 2), _digits(c + 20, 3)
    if year < 1 or not 1 <= month <= 12 or day < 1 or not 0 <= hour <= 23 or not 0 <= minute <= 59 \
            or not 0 <= second <= 59 or millis < 0:
        return None
    days_in_month = _MONTH_DAYS[month]
    if month == 2 and year % 4 == 0 and (year % 100 != 0 or year % 400 == 0):
        days_in_month = 29
    if day > days_in_month:
        return None
    cdef long long seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second
    return <double>(seconds * 1000 + millis)


cdef int _digits(const unsigned char* c, int n):
    """The number `n` ASCII digits spell, or -1."""
    cdef int value = 0, i
    for i in range(n):
        if not c'0' <= c[i] <= c'9':
            return -1
        value = value * 10 + (c[i] - c'0')
    return value


cdef long long _days_from_civil(long long year, long long month, long long day):
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    year -= month <= 2
    cdef long long era = (year if year >= 0 else year - 399) // 400
    cdef long long year_of_era = year - era * 400
    cdef long long day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    cdef long long day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146097 + day_of_era - 719468


def own_time(value):
    """`_own_time` for the tests: epoch ms of our own format, or None."""
    return _own_time(value)


# --- our own format, written ------------------------------------------------------------------------------

# 1000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z: the years strftime writes with four digits (it does not
# pad the year: 999, not 0999).
cdef double _FIRST_MS = -30610224000000.0
cdef double _END_MS = 253402300800000.0


cpdef str iso_ms(object epoch_ms):
    """What `model.times.iso_ms` answers, without its calls: a span's document has two times and a log's
    one, and the Python formatter (a cached strftime per second, then a join) was 6 % of a pool process's
    CPU in the pipeline (py-spy). Outside years 1000..9999, and for what is not a finite number, the Python
    formatter answers (or raises) itself."""
    cdef double value
    cdef long long millis, seconds, days, second_of_day
    cdef int year, month, day
    cdef char text[24]
    if type(epoch_ms) is float or type(epoch_ms) is int and -2**53 <= epoch_ms <= 2**53:
        value = epoch_ms
    else:
        return _python_iso_ms(epoch_ms)
    if not _FIRST_MS <= value < _END_MS:
        return _python_iso_ms(epoch_ms)
    millis = <long long>value  # toward zero, as int() does
    seconds = millis // 1000  # Cython's // floors, as Python's does (cdivision is off), so millis >= 0 below
    millis -= seconds * 1000
    days = seconds // 86400
    second_of_day = seconds - days * 86400
    _civil_from_days(days, &year, &month, &day)
    _put(text, year, 4)
    text[4] = c'-'
    _put(text + 5, month, 2)
    text[7] = c'-'
    _put(text + 8, day, 2)
    text[10] = c'T'
    _put(text + 11, <int>(second_of_day // 3600), 2)
    text[13] = c':'
    _put(text + 14, <int>(second_of_day // 60 % 60), 2)
    text[16] = c':'
    _put(text + 17, <int>(second_of_day % 60), 2)
    text[19] = c'.'
    _put(text + 20, <int>millis, 3)
    text[23] = c'Z'
    return PyUnicode_FromStringAndSize(text, 24)


cdef void _put(char* out, int value, int n):
    """`value` as `n` ASCII digits, zero-padded."""
    cdef int i
    for i in range(n - 1, -1, -1):
        out[i] = c'0' + value % 10
        value //= 10


cdef void _civil_from_days(long long days, int* year, int* month, int* day):
    """The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's algorithm, `_days_from_civil`'s inverse)."""
    days += 719468
    cdef long long era = days // 146097  # floors
    cdef long long day_of_era = days - era * 146097
    cdef long long year_of_era = (day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096) // 365
    cdef long long day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    cdef long long shifted_month = (5 * day_of_year + 2) // 153
    day[0] = <int>(day_of_year - (153 * shifted_month + 2) // 5 + 1)
    month[0] = <int>(shifted_month + 3 if shifted_month < 10 else shifted_month - 9)
    year[0] = <int>(year_of_era + era * 400 + (month[0] <= 2))
