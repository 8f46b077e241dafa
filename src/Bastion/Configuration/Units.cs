using System.Globalization;

namespace Bastion.Configuration;

/// <summary>Durations (500ms, 30s, 5m, 1h) and sizes (512, 64KiB, 10MiB, 1GiB, 10KB).</summary>
public static class Units
{
    public static bool TryParseDuration(string s, out TimeSpan value)
    {
        value = default;
        s = s.Trim();
        int i = 0;
        while (i < s.Length && (char.IsDigit(s[i]) || s[i] == '.')) i++;
        if (i == 0 || !double.TryParse(s.AsSpan(0, i), NumberStyles.Float, CultureInfo.InvariantCulture, out var n) || n < 0)
            return false;
        var unit = s[i..].Trim();
        double ms = unit switch
        {
            "ms" => n,
            "s" or "" => n * 1000,
            "m" => n * 60_000,
            "h" => n * 3_600_000,
            "d" => n * 86_400_000,
            _ => double.NaN,
        };
        if (double.IsNaN(ms)) return false;
        value = TimeSpan.FromMilliseconds(ms);
        return true;
    }

    public static bool TryParseSize(string s, out long value)
    {
        value = 0;
        s = s.Trim();
        int i = 0;
        while (i < s.Length && (char.IsDigit(s[i]) || s[i] == '.')) i++;
        if (i == 0 || !double.TryParse(s.AsSpan(0, i), NumberStyles.Float, CultureInfo.InvariantCulture, out var n) || n < 0)
            return false;
        var unit = s[i..].Trim();
        double mult = unit.ToUpperInvariant() switch
        {
            "" or "B" => 1,
            "KB" or "K" => 1000,
            "MB" or "M" => 1000_000,
            "GB" or "G" => 1000_000_000,
            "KIB" => 1024,
            "MIB" => 1024 * 1024,
            "GIB" => 1024L * 1024 * 1024,
            "TIB" => 1024L * 1024 * 1024 * 1024,
            _ => double.NaN,
        };
        if (double.IsNaN(mult)) return false;
        value = (long)(n * mult);
        return true;
    }

    public static string FormatSize(long bytes) => bytes switch
    {
        >= 1L << 30 when bytes % (1L << 30) == 0 => $"{bytes >> 30}GiB",
        >= 1L << 20 when bytes % (1L << 20) == 0 => $"{bytes >> 20}MiB",
        >= 1L << 10 when bytes % (1L << 10) == 0 => $"{bytes >> 10}KiB",
        _ => bytes.ToString(CultureInfo.InvariantCulture),
    };
}
