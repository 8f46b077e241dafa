using Bastion.Policy.Canonical;

namespace Bastion.Observability;

/// <summary>
/// What never reaches a log line or /api/config (SPEC 5, issue 9): the `user:password@` of a URL or authority, and
/// the values of credential headers.
/// </summary>
public static class Redact
{
    public const string Hidden = "(redacted)";

    /// <summary>`METHOD target` (or a bare target) without userinfo; the text unchanged when it holds none.</summary>
    public static string RequestLine(string line)
    {
        if (line.IndexOf('@') < 0) return line;
        int sp = line.IndexOf(' ');
        return sp < 0 ? RequestTarget.Redact(line) : string.Concat(line.AsSpan(0, sp + 1), RequestTarget.Redact(line[(sp + 1)..]));
    }

    /// <summary>A URL or host:port from the configuration without userinfo.</summary>
    public static string Url(string url) => url.IndexOf('@') < 0 ? url : RequestTarget.Redact(url);

    /// <summary>Headers whose values are credentials.</summary>
    public static bool IsSecretHeader(string name) =>
        name.Equals("Authorization", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Proxy-Authorization", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Cookie", StringComparison.OrdinalIgnoreCase);
}
