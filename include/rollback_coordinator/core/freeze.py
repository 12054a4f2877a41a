"""Change freeze windows from governance.yaml, and whether an instant falls inside one.

A window is either fixed (``start`` and ``end`` are ISO 8601 date-times) or weekly (``start``
and ``end`` are local times of day, on ``weekdays``, in an IANA ``timezone``). Weekly times
are wall-clock times, so "16:00 Europe/Berlin" is 15:00 UTC in winter and 14:00 UTC in summer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from rollback_coordinator.core.yaml_lines import FieldValueError

WINDOW_NAME_PATTERN = r"^[a-z][a-z0-9_-]*$"

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")

_TIME_OF_DAY = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?")


def _check_window_name(name: str) -> str:
    if not re.fullmatch(WINDOW_NAME_PATTERN, name):
        raise ValueError(
            f"window name {name!r} is invalid; use lowercase letters, digits, '_' and '-', "
            f"starting with a letter, because decisions cite it as freeze.<name>"
        )
    return name


def _parse_weekday(value: Any) -> str:
    text = value.strip().lower() if isinstance(value, str) else None
    if text in WEEKDAYS:
        return text
    if text in _FULL_WEEKDAYS:
        return WEEKDAYS[_FULL_WEEKDAYS.index(text)]
    raise ValueError(f"weekday {value!r} is invalid; use {', '.join(WEEKDAYS)}")


def _check_time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"time zone {name!r} is unknown; use an IANA name such as Europe/Berlin or UTC"
        ) from None
    return name


def _parse_bound(value: Any) -> datetime | time:
    """Read a window bound: a date-time for a fixed window, a time of day for a weekly one.

    YAML reads an unquoted ``16:00`` as the base-60 number 960 and an unquoted date-time
    as a datetime, so both arrive here as parsed values, not text.
    """
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        raise ValueError(
            f"{value.isoformat()} is a date without a time; write a date-time with an "
            f"offset, as in {value.isoformat()}T00:00:00+01:00"
        )
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 24 * 60:
        hours, minutes = divmod(value, 60)
        raise ValueError(
            f"YAML read an unquoted time as the number {value}; write it in quotes, "
            f'as "{hours:02d}:{minutes:02d}"'
        )
    if isinstance(value, str):
        text = value.strip()
        if _TIME_OF_DAY.fullmatch(text):
            return time.fromisoformat(text)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(
        f"invalid window bound {value!r}; write a time of day in quotes, as \"16:00\", or an "
        f"ISO 8601 date-time with an offset, as 2025-12-20T18:00:00+01:00"
    )


WindowName = Annotated[str, AfterValidator(_check_window_name)]
Weekday = Annotated[str, BeforeValidator(_parse_weekday)]
TimeZoneName = Annotated[str, AfterValidator(_check_time_zone)]
WindowBound = Annotated[datetime | time, BeforeValidator(_parse_bound)]


@dataclass(frozen=True)
class Occurrence:
    """One stretch of time during which a window is in force, both ends in UTC, end excluded."""

    start: datetime
    end: datetime


class FreezeWindow(BaseModel):
    """A stretch of time during which no rollback may run without an override.

    The start is included and the end excluded. A weekly window whose end is not after its
    start runs past midnight into the next day, so an equal start and end means 24 hours.
    Local times that a DST change skips or repeats resolve as Python's ``zoneinfo`` does
    with ``fold=0``: a skipped time moves forward by the length of the gap, and a repeated
    time means its first occurrence.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: WindowName
    start: WindowBound
    end: WindowBound
    weekdays: list[Weekday] | None = Field(default=None, min_length=1)
    timezone: TimeZoneName | None = None
    environments: list[str] = Field(default_factory=list)
    override_role: str | None = None

    @property
    def weekly(self) -> bool:
        return isinstance(self.start, time)

    @model_validator(mode="after")
    def _bounds_agree(self) -> "FreezeWindow":
        if isinstance(self.start, time) != isinstance(self.end, time):
            raise FieldValueError(
                "end",
                f"window '{self.name}': start and end must both be times of day (a weekly "
                f"window) or both be date-times (a fixed window)",
            )
        if self.weekly:
            self._check_weekly()
        else:
            self._check_fixed()
        return self

    def _check_weekly(self) -> None:
        if self.timezone is None:
            raise FieldValueError(
                "timezone",
                f"window '{self.name}' has times of day but no timezone; add an IANA name "
                f"such as Europe/Berlin, because the times are local wall-clock times",
            )
        for field in ("start", "end"):
            if getattr(self, field).tzinfo is not None:
                raise FieldValueError(
                    field,
                    f"window '{self.name}': a time of day takes no offset; remove it, the "
                    f"timezone field sets the zone",
                )

    def _check_fixed(self) -> None:
        if self.weekdays is not None:
            raise FieldValueError(
                "weekdays",
                f"window '{self.name}': weekdays apply only to weekly windows whose start "
                f'and end are times of day such as "16:00"; remove weekdays or use times',
            )
        for field in ("start", "end"):
            if getattr(self, field).tzinfo is None and self.timezone is None:
                raise FieldValueError(
                    field,
                    f"window '{self.name}': {field} has no UTC offset; add one, as in "
                    f"2025-12-20T18:00:00+01:00, or set timezone",
                )
        occurrence = self._fixed_occurrence()
        if occurrence.end <= occurrence.start:
            raise FieldValueError(
                "end", f"window '{self.name}': end must be later than start; swap or fix them"
            )

    def applies_to(self, environment: str) -> bool:
        return not self.environments or environment in self.environments

    def occurrence_at(self, now: datetime) -> Occurrence | None:
        """Return the occurrence of this window that contains ``now``, or None.

        Raise ValueError when ``now`` is naive, because a naive time has no single instant.
        """
        if now.tzinfo is None:
            raise ValueError("freeze windows need a timezone-aware instant, got a naive one")
        instant = now.astimezone(UTC)
        candidates = [self._fixed_occurrence()] if not self.weekly else self._weekly_near(instant)
        for occurrence in candidates:
            if occurrence.start <= instant < occurrence.end:
                return occurrence
        return None

    def local(self, instant: datetime) -> datetime:
        """Return ``instant`` in the window's own time zone, for messages people read."""
        zone = ZoneInfo(self.timezone) if self.timezone else self._fixed_zone()
        return instant.astimezone(zone)

    def _fixed_zone(self) -> Any:
        assert isinstance(self.start, datetime)
        return self.start.tzinfo or UTC

    def _fixed_occurrence(self) -> Occurrence:
        assert isinstance(self.start, datetime) and isinstance(self.end, datetime)
        zone = ZoneInfo(self.timezone) if self.timezone else None
        return Occurrence(_to_utc(self.start, zone), _to_utc(self.end, zone))

    def _weekly_near(self, instant: datetime) -> list[Occurrence]:
        # An occurrence lasts at most 24 hours, so only one that starts on the local date
        # of ``instant`` or on the day before can contain it.
        assert isinstance(self.start, time) and isinstance(self.end, time)
        assert self.timezone is not None
        zone = ZoneInfo(self.timezone)
        today = instant.astimezone(zone).date()
        days = self.weekdays or list(WEEKDAYS)
        found = []
        for day in (today - timedelta(days=1), today):
            if WEEKDAYS[day.weekday()] not in days:
                continue
            end_day = day + timedelta(days=1) if self.end <= self.start else day
            found.append(
                Occurrence(
                    _to_utc(datetime.combine(day, self.start), zone),
                    _to_utc(datetime.combine(end_day, self.end), zone),
                )
            )
        return found


def _to_utc(moment: datetime, zone: ZoneInfo | None) -> datetime:
    """Convert to UTC; a naive ``moment`` is a wall-clock time in ``zone`` with fold=0."""
    if moment.tzinfo is None:
        assert zone is not None
        moment = moment.replace(tzinfo=zone, fold=0)
    return moment.astimezone(UTC)


@dataclass(frozen=True)
class ActiveFreeze:
    """A window in force at the moment a decision is made, with its current occurrence."""

    window: FreezeWindow
    occurrence: Occurrence

    def describe(self) -> str:
        start = self.window.local(self.occurrence.start).isoformat()
        end = self.window.local(self.occurrence.end).isoformat()
        return f"change freeze '{self.window.name}' is in force from {start} until {end}"


def active_freezes(
    windows: list[FreezeWindow], environment: str, now: datetime
) -> list[ActiveFreeze]:
    """Return the windows that cover ``environment`` and are in force at ``now``, in file order."""
    active = []
    for window in windows:
        if not window.applies_to(environment):
            continue
        occurrence = window.occurrence_at(now)
        if occurrence is not None:
            active.append(ActiveFreeze(window, occurrence))
    return active
