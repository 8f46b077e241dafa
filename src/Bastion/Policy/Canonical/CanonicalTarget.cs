namespace Bastion.Policy.Canonical;

public enum TargetStatus : byte
{
    /// <summary>Parsed; the canonical form is ready (ambiguous forms included when the listener passes them).</summary>
    Ok,
    /// <summary>Well-formed, but two backends may read it differently (`%2F`, `//`, NUL...): refuse with 400.</summary>
    Ambiguous,
    /// <summary>Not a request target at all: refuse with 400.</summary>
    Malformed,
}

/// <summary>What a listener does with targets that backends may read differently (SPEC 2.1).</summary>
public enum AmbiguousTargets : byte
{
    /// <summary>The default: 400.</summary>
    Refuse,
    /// <summary>Forwarded as received; the policy judges their most decoded reading.</summary>
    Pass,
}

/// <summary>
/// One HTTP request target in the ONE form that is both judged and forwarded: the canonical path and query to
/// send, and the attributes the policy sees. Reused per connection by the caller.
/// </summary>
public sealed class CanonicalTarget
{
    /// <summary>Lowercase scheme of an absolute-form target; empty for origin-form.</summary>
    public string Scheme { get; internal set { field = value; Changed(); } } = "";
    /// <summary>Normalised host (<see cref="HostName"/>) of an absolute-form target; null for origin-form.</summary>
    public string? Host { get; internal set { field = value; Changed(); } }
    /// <summary>The port: explicit, or the scheme's default; -1 for origin-form.</summary>
    public int Port { get; internal set { field = value; Changed(); } } = -1;
    /// <summary>The path as forwarded: unreserved characters decoded, other escapes in upper-case hex, dot-segments removed.</summary>
    public string Path { get; internal set { field = value; Changed(); } } = "/";
    /// <summary>The query as forwarded, with its '?', or empty.</summary>
    public string Query { get; internal set { field = value; Changed(); } } = "";
    /// <summary>The path as path rules see it: fully percent-decoded (UTF-8).</summary>
    public string PolicyPath { get; internal set; } = "/";
    /// <summary>Why the target is ambiguous (also set when the listener passes ambiguous targets), or null.</summary>
    public string? Ambiguity { get; internal set; }
    /// <summary>The target carried `user:password@` (never forwarded, never logged).</summary>
    public bool HadUserinfo { get; internal set; }
    /// <summary>The target carried a `#fragment` (dropped: it is the client's business only).</summary>
    public bool HadFragment { get; internal set; }

    // Built once per request (a session asks for them several times: Host line, log, `url` rules).
    string? _pathAndQuery, _authority, _url;

    void Changed() => _pathAndQuery = _authority = _url = null;

    public string PathAndQuery => _pathAndQuery ??= Query.Length == 0 ? Path : Path + Query;

    /// <summary>`host` or `host:port` when the port is not the scheme's default; IPv6 in brackets.</summary>
    public string Authority => _authority ??=
        Host is null ? "" : Port == DefaultPort(Scheme) ? HostName.ForUrl(Host) : $"{HostName.ForUrl(Host)}:{Port}";

    /// <summary>The whole URL as `url` rules see it and the log writes it (no userinfo, no fragment).</summary>
    public string Url => _url ??= Host is null ? PathAndQuery : $"{Scheme}://{Authority}{PathAndQuery}";

    public static int DefaultPort(string scheme) => scheme switch
    {
        "http" or "ws" => 80,
        "https" or "wss" => 443,
        _ => -1,
    };

    /// <summary>
    /// The attributes the policy judges, from this one form: host, port, decoded path and URL. An origin-form target
    /// leaves host and port to the caller (the Host header, the listener's port).
    /// </summary>
    public void ApplyTo(RequestAttributes a)
    {
        if (Host is not null)
        {
            a.Host = Host;
            a.Port = Port;
        }
        a.Path = PolicyPath;
        a.Url = Url;
    }

    /// <summary>An origin-form target completed by the request's scheme and its normalised Host (the reverse proxy).</summary>
    public void SetAuthority(string scheme, string host, int port)
    {
        Scheme = scheme;
        Host = host;
        Port = port;
    }

    internal void Clear()
    {
        Scheme = "";
        Host = null;
        Port = -1;
        Path = PolicyPath = "/";
        Query = "";
        Ambiguity = null;
        HadUserinfo = HadFragment = false;
    }
}
