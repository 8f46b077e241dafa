namespace Bastion.Policy;

/// <summary>`Mon-Fri 08:00-18:00`, `Sat,Sun`, `22:00-06:00` (across midnight), in the gateway's local time.</summary>
public sealed class TimeWindow
{
    static readonly string[] DayNames = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    readonly bool[] _days = new bool[7];
    readonly int _fromMinute, _toMinute;
    public string Text { get; }

    TimeWindow(string text, int from, int to)
    {
        Text = text;
        _fromMinute = from;
        _toMinute = to;
    }

    public static TimeWindow? Parse(string text, out string? error)
    {
        error = null;
        var parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        string? days = null, hours = null;
        foreach (var p in parts)
        {
            if (char.IsDigit(p[0])) hours = p;
            else days = p;
        }
        if (parts.Length is 0 or > 2 || (parts.Length == 2 && (days is null || hours is null)))
        {
            error = $"'{text}' is not a time window (like Mon-Fri 08:00-18:00)";
            return null;
        }
        int from = 0, to = 24 * 60;
        if (hours is not null)
        {
            var hs = hours.Split('-');
            if (hs.Length != 2 || !TryMinute(hs[0], out from) || !TryMinute(hs[1], out to))
            {
                error = $"'{hours}' is not a range of hours (like 08:00-18:00)";
                return null;
            }
            if (from == to)
            {
                error = $"'{hours}' is an empty range of hours (leave the hours out for the whole day)";
                return null;
            }
        }
        var w = new TimeWindow(text, from, to);
        if (days is null) Array.Fill(w._days, true);
        else
        {
            foreach (var item in days.Split(','))
            {
                var r = item.Split('-');
                int a = Day(r[0]), b = r.Length == 2 ? Day(r[1]) : a;
                if (a < 0 || b < 0 || r.Length > 2)
                {
                    error = $"'{item}' is not a day or range of days (Mon..Sun)";
                    return null;
                }
                for (int d = a; ; d = (d + 1) % 7)
                {
                    w._days[d] = true;
                    if (d == b) break;
                }
            }
        }
        return w;
    }

    static int Day(string s) => Array.IndexOf(DayNames, s.Trim().ToLowerInvariant()[..Math.Min(3, s.Trim().Length)]);

    static bool TryMinute(string s, out int minute)
    {
        minute = 0;
        var hm = s.Split(':');
        if (hm.Length != 2 || !int.TryParse(hm[0], out var h) || !int.TryParse(hm[1], out var m) || h < 0 || h > 24 || m < 0 || m > 59)
            return false;
        minute = h * 60 + m;
        return minute <= 24 * 60;
    }

    public bool Contains(DateTime t)
    {
        int minute = t.Hour * 60 + t.Minute;
        int day = (int)t.DayOfWeek;
        if (_fromMinute <= _toMinute) return _days[day] && minute >= _fromMinute && minute < _toMinute;
        // Across midnight: the part after midnight belongs to the day before.
        if (minute >= _fromMinute) return _days[day];
        return minute < _toMinute && _days[(day + 6) % 7];
    }
}
