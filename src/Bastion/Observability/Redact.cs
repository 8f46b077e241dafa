using Bastion.Policy.Canonical;

namespace Bastion.Observability;

/// <summary>
/// What never reaches a log line or /api/config (SPEC 5, issue 9): the `user:password@` of a URL or authority, and
/// the values of credential headers.
/// </summary>
public static class Redact
{
    public const string Hidden = "(redacted)";

    /// <summary>
    /// `METHOD URL` or `CONNECT authority` without userinfo; anything else (`RCPT TO:&lt;a@b&gt;`, a bare name) is
    /// left as it is: an '@' there is no credential.
    /// </summary>
    public static string RequestLine(string line)
    {
        if (line.IndexOf('@') < 0) return line;
        int sp = line.IndexOf(' ');
        if (sp < 0) return line;
        // The line itself when there is nothing to redact (no copy of its target just to look).
        var target = line.AsSpan(sp + 1);
        bool url = target.Contains("://", StringComparison.Ordinal);
        bool authority = line.AsSpan(0, sp).Equals("CONNECT", StringComparison.OrdinalIgnoreCase) && !(target.Length > 0 && target[0] == '/');
        return url || authority ? string.Concat(line.AsSpan(0, sp + 1), RequestTarget.Redact(line[(sp + 1)..])) : line;
    }

    /// <summary>A URL or host:port from the configuration without userinfo.</summary>
    public static string Url(string url) => url.IndexOf('@') < 0 ? url : RequestTarget.Redact(url);

    /// <summary>Headers whose values are credentials.</summary>
    public static bool IsSecretHeader(string name) =>
        name.Equals("Authorization", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Proxy-Authorization", StringComparison.OrdinalIgnoreCase)
        || name.Equals("Cookie", StringComparison.OrdinalIgnoreCase);
}
