using System.Buffers;

namespace Bastion.Observability.LogFormats;

/// <summary>
/// How one <see cref="AccessEvent"/> is written as one line (without its newline): `logging.format` is `json`
/// (SPEC 5), `squid` (Squid's native access.log), `combined` (Apache's combined) or a template with `{field}`s.
/// An instance belongs to the log's single writer task, so it may keep buffers between lines.
/// </summary>
public abstract class AccessLogFormat
{
    public abstract void Write(AccessEvent e, IBufferWriter<byte> output);

    public static readonly string[] Names = ["json", "squid", "combined"];

    /// <summary>The format `logging.format` names, or null with a reason (a template's unknown field, a typo).</summary>
    public static AccessLogFormat? Parse(string format, out string? error)
    {
        error = null;
        switch (format)
        {
            case "json": return new JsonLogFormat();
            case "squid": return new SquidLogFormat();
            case "combined": return new CombinedLogFormat();
        }
        if (format.Contains('{')) return TemplateLogFormat.ParseTemplate(format, out error);
        error = $"logging.format must be json, squid, combined or a template with {{fields}}, not '{format}'"
            + Configuration.Suggest.Hint(format, Names);
        return null;
    }
}
