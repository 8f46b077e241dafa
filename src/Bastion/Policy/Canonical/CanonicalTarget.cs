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
    public string Scheme { get; internal set; } = "";
    /// <summary>Normalised host (<see cref="HostName"/>) of an absolute-form target; null for origin-form.</summary>
    public string? Host { get; internal set; }
    /// <summary>The port: explicit, or the scheme's default; -1 for origin-form.</summary>
    public int Port { get; internal set; } = -1;
    /// <summary>The path as forwarded: unreserved characters decoded, other escapes in upper-case hex, dot-segments removed.</summary>
    public string Path { get; internal set; } = "/";
    /// <summary>The query as forwarded, with its '?', or empty.</summary>
    public string Query { get; internal set; } = "";
    /// <summary>The path as path rules see it: fully percent-decoded (UTF-8).</summary>
    public string PolicyPath { get; internal set; } = "/";
    /// <summary>Why the target is ambiguous (also set when the listener passes ambiguous targets), or null.</summary>
    public string? Ambiguity { get; internal set; }
    /// <summary>The target carried `user:password@` (never forwarded, never logged).</summary>
    public bool HadUserinfo { get; internal set; }
    /// <summary>The target carried a `#fragment` (dropped: it is the client's business only).</summary>
    public bool HadFragment { get; internal set; }

    // Built when asked for and kept while the parts they are made of stay the same (a session asks for them several
    // times a request: Host line, log, `url` rules; and a keep-alive connection usually repeats its target).
    string? _pathAndQuery, _authority, _url;
    string? _pqPath, _pqQuery, _auScheme, _auHost, _urlScheme, _urlAuthority, _urlPathAndQuery;
    int _auPort;

    public string PathAndQuery
    {
        get
        {
            if (_pathAndQuery is null || !ReferenceEquals(_pqPath, Path) || !ReferenceEquals(_pqQuery, Query))
            {
                _pqPath = Path;
                _pqQuery = Query;
                _pathAndQuery = Query.Length == 0 ? Path : Path + Query;
            }
            return _pathAndQuery;
        }
    }

    /// <summary>`host` or `host:port` when the port is not the scheme's default; IPv6 in brackets.</summary>
    public string Authority
    {
        get
        {
            if (_authority is null || _auPort != Port || !string.Equals(_auHost, Host, StringComparison.Ordinal) || !ReferenceEquals(_auScheme, Scheme))
            {
                _auHost = Host;
                _auPort = Port;
                _auScheme = Scheme;
                _authority = Host is null ? "" : Port == DefaultPort(Scheme) ? HostName.ForUrl(Host) : $"{HostName.ForUrl(Host)}:{Port}";
            }
            return _authority;
        }
    }

    /// <summary>The whole URL as `url` rules see it and the log writes it (no userinfo, no fragment).</summary>
    public string Url
    {
        get
        {
            var authority = Authority;
            var pathAndQuery = PathAndQuery;
            if (_url is null || !ReferenceEquals(_urlAuthority, authority) || !ReferenceEquals(_urlPathAndQuery, pathAndQuery)
                || !ReferenceEquals(_urlScheme, Scheme))
            {
                _urlAuthority = authority;
                _urlPathAndQuery = pathAndQuery;
                _urlScheme = Scheme;
                _url = Host is null ? pathAndQuery : $"{Scheme}://{authority}{pathAndQuery}";
            }
            return _url;
        }
    }

    // The last parse on this connection: its target's bytes and what came of them, restored when the next request
    // names the same target (the same strings, judged and forwarded exactly as a fresh parse would make them).
    byte[] _lastTarget = [];
    int _lastLength = -1;
    AmbiguousTargets _lastMode;
    TargetStatus _lastStatus;
    string? _lastReason;
    Parsed _last;

    readonly record struct Parsed(string Scheme, string? Host, int Port, string Path, string Query, string PolicyPath, string? Ambiguity,
        bool HadUserinfo, bool HadFragment);

    /// <summary>The last Host header normalised on this connection (<see cref="HostName.TryNormalize"/>) and its result.</summary>
    internal string? HostIn, HostOut;

    internal bool TryRepeat(ReadOnlySpan<byte> target, AmbiguousTargets mode, out TargetStatus status, out string? reason)
    {
        status = _lastStatus;
        reason = _lastReason;
        if (_lastLength != target.Length || _lastMode != mode || !target.SequenceEqual(_lastTarget.AsSpan(0, _lastLength))) return false;
        (Scheme, Host, Port, Path, Query, PolicyPath, Ambiguity, HadUserinfo, HadFragment) = _last;
        return true;
    }

    internal TargetStatus Remember(ReadOnlySpan<byte> target, AmbiguousTargets mode, TargetStatus status, string? reason)
    {
        if (target.Length > 8192)
        {
            _lastLength = -1;
            return status;
        }
        if (_lastTarget.Length < target.Length) _lastTarget = new byte[Math.Max(target.Length, 128)];
        target.CopyTo(_lastTarget);
        _lastLength = target.Length;
        _lastMode = mode;
        _lastStatus = status;
        _lastReason = reason;
        _last = new Parsed(Scheme, Host, Port, Path, Query, PolicyPath, Ambiguity, HadUserinfo, HadFragment);
        return status;
    }

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
