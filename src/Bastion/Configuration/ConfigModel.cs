using System.Collections.Immutable;
using System.Net;
using Bastion.Policy.Canonical;

namespace Bastion.Configuration;

// The configuration as immutable records (SPEC 2). Built by ConfigLoader, validated up front;
// swapped whole on reload, never mutated.

public enum ListenerType { HttpProxy, HttpReverse, Ftp, Smtp, Socks5, Tcp }

public static class ListenerTypes
{
    public static string Name(ListenerType t) => t switch
    {
        ListenerType.HttpProxy => "http-proxy",
        ListenerType.HttpReverse => "http-reverse",
        ListenerType.Ftp => "ftp",
        ListenerType.Smtp => "smtp",
        ListenerType.Socks5 => "socks5",
        ListenerType.Tcp => "tcp",
        _ => t.ToString(),
    };

    public static bool TryParse(string s, out ListenerType t)
    {
        foreach (var v in Enum.GetValues<ListenerType>())
            if (Name(v) == s) { t = v; return true; }
        t = default;
        return false;
    }

    /// <summary>Types this build can run. The rest are refused by `check` with a clear message.</summary>
    public static bool IsBuilt(ListenerType t) => Gateway.ListenerDescriptors.Find(t) is not null;
}

/// <summary>A host (name or IP literal) and port, as written in `listen:` or `upstream:`.</summary>
public sealed record HostPort(string Host, int Port)
{
    public override string ToString() => Host.Contains(':') ? $"[{Host}]:{Port}" : $"{Host}:{Port}";

    public static bool TryParse(string s, out HostPort? hp)
    {
        hp = null;
        s = s.Trim();
        string host;
        string port;
        if (s.StartsWith('['))
        {
            int close = s.IndexOf(']');
            if (close < 0 || close + 1 >= s.Length || s[close + 1] != ':') return false;
            host = s[1..close];
            port = s[(close + 2)..];
        }
        else
        {
            int colon = s.LastIndexOf(':');
            if (colon <= 0 || s.IndexOf(':') != colon) return false;
            host = s[..colon];
            port = s[(colon + 1)..];
        }
        if (!int.TryParse(port, out var p) || p < 0 || p > 65535 || host.Length == 0) return false;
        hp = new HostPort(host, p);
        return true;
    }

    public IPEndPoint? ToIPEndPoint()
    {
        if (Host is "localhost") return new IPEndPoint(IPAddress.Loopback, Port);
        if (Host is "*" or "0.0.0.0") return new IPEndPoint(IPAddress.Any, Port);
        return IPAddress.TryParse(Host, out var ip) ? new IPEndPoint(ip, Port) : null;
    }
}

/// <summary>`resolver:` how client-named hosts become addresses: a hosts file first, then (unless `dns: off`) the system's DNS.</summary>
public sealed record ResolverConfig(string? HostsFile, bool SystemDns, SourcePos Pos);

public sealed record AdminConfig(HostPort Listen, string? TokenFile, SourcePos Pos);

public sealed record LoggingConfig(string Access, SourcePos Pos)
{
    public static readonly LoggingConfig Default = new("stdout", default);

    /// <summary>`format:` json (default), squid, combined, or a template with {fields}.</summary>
    public string Format { get; init; } = "json";
    public SourcePos FormatPos { get; init; }
    /// <summary>`connections:` also write a line per closed HTTP connection (socks5, tcp, ftp, smtp always have theirs).</summary>
    public bool Connections { get; init; }
    /// <summary>Where `access: syslog` sends, and as what.</summary>
    public SyslogConfig Syslog { get; init; } = SyslogConfig.Default;
}

/// <summary>`logging.syslog`: the address (/dev/log, unix:/path, udp://h:p, tcp://h:p), facility and APP-NAME.</summary>
public sealed record SyslogConfig(string Address, int Facility, string AppName, SourcePos Pos)
{
    public static readonly SyslogConfig Default = new("/dev/log", 23, "bastion", default);

    /// <summary>RFC 5424 facility names and their codes.</summary>
    public static readonly Dictionary<string, int> Facilities = new(StringComparer.Ordinal)
    {
        ["kern"] = 0,
        ["user"] = 1,
        ["mail"] = 2,
        ["daemon"] = 3,
        ["auth"] = 4,
        ["syslog"] = 5,
        ["lpr"] = 6,
        ["news"] = 7,
        ["uucp"] = 8,
        ["cron"] = 9,
        ["authpriv"] = 10,
        ["ftp"] = 11,
        ["local0"] = 16,
        ["local1"] = 17,
        ["local2"] = 18,
        ["local3"] = 19,
        ["local4"] = 20,
        ["local5"] = 21,
        ["local6"] = 22,
        ["local7"] = 23,
    };
}

public sealed record IdentityConfig(string? UsersFile, ImmutableDictionary<string, ImmutableArray<string>> Groups, SourcePos Pos);

/// <summary>A named list: inline items or a file (one entry a line).</summary>
public sealed record ListConfig(string Name, ImmutableArray<string> Items, string? File, SourcePos Pos);

public sealed record Limits
{
    public int MaxConnections { get; init; } = 10_000;
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(60);
    public TimeSpan HeaderTimeout { get; init; } = TimeSpan.FromSeconds(10);
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(10);
    /// <summary>Time allowed for the upstream to start answering (504 past it).</summary>
    public TimeSpan ResponseTimeout { get; init; } = TimeSpan.FromSeconds(60);
    public long MaxRequestBody { get; init; } = 100L * 1024 * 1024;
    public int MaxHeaderSize { get; init; } = 32 * 1024;
    /// <summary>Requests per second per client IP; 0 = no limit.</summary>
    public double Rate { get; init; }
    public int Burst { get; init; }
    public TimeSpan DrainTimeout { get; init; } = TimeSpan.FromSeconds(10);

    public static readonly Limits Default = new();
}

public sealed record TlsCertConfig(string Cert, string Key, SourcePos Pos);

/// <summary>http-proxy `tls_inspection:`; host lists keep their positions for errors found when they are compiled.</summary>
public sealed record TlsInspectionConfig(ValueSpec Ca, ImmutableArray<ValueSpec> Inspect, ImmutableArray<ValueSpec> Skip,
    ValueSpec? UpstreamCa, ImmutableArray<ValueSpec> InsecureUpstream, SourcePos Pos);

public sealed record RouteConfig(
    string? Host, string? Path, ImmutableArray<string> Methods,
    ImmutableDictionary<string, string> Headers, string Upstream,
    string? StripPrefix, string? RewritePrefix, SourcePos Pos);

/// <summary>The `ftp:` section of an ftp listener (SPEC 2). Defaults: OS-picked passive ports, passive towards the server, no TLS.</summary>
public sealed record FtpConfig(string? PassivePorts, string DataMode, SourcePos Pos)
{
    /// <summary>`passive_ports` parsed: the range PASV/EPSV listeners are opened in; 0-0 lets the OS pick.</summary>
    public int PassiveLow { get; init; }
    public int PassiveHigh { get; init; }
    /// <summary>What PASV replies announce instead of the control connection's local address (a gateway behind NAT).</summary>
    public string? PassiveAddress { get; init; }
    /// <summary>AUTH TLS towards clients with this certificate.</summary>
    public TlsCertConfig? Tls { get; init; }
    /// <summary>`client_tls: required`: USER before AUTH TLS, and data without PROT P, are refused.</summary>
    public bool ClientTlsRequired { get; init; }
    /// <summary>required | opportunistic | off: AUTH TLS towards the server.</summary>
    public string UpstreamTls { get; init; } = "off";
    /// <summary>PEM bundle trusted for the server's certificate besides the system store (`upstream_tls: required`).</summary>
    public string? UpstreamCa { get; init; }
    public SourcePos UpstreamCaPos { get; init; }
    /// <summary>Longest command line accepted from clients (without CRLF).</summary>
    public int MaxLine { get; init; } = 512;
    /// <summary>Time for a data connection to be opened (by the client, the server or the gateway).</summary>
    public TimeSpan DataTimeout { get; init; } = TimeSpan.FromSeconds(30);

    public static readonly FtpConfig Default = new(null, "passive", default);
}

public sealed record SmtpConfig(string? Banner, ImmutableArray<string> Extensions, TlsCertConfig? Tls,
    string UpstreamTls, int MaxRecipients, SourcePos Pos)
{
    /// <summary>Longest command line, CRLF included (RFC 5321 4.5.3.1.4: 512; more for long parameters).</summary>
    public int MaxLine { get; init; } = 1000;
    public long MaxMessage { get; init; } = 50L * 1024 * 1024;
    /// <summary>`bare_newline: refuse | normalize` for bare CR/LF in message data.</summary>
    public string BareNewline { get; init; } = "refuse";
    /// <summary>Accept source routes and `%`/`!` local parts (refused by default).</summary>
    public bool AllowAddressHacks { get; init; }
    /// <summary>Extra CA bundle trusted for the server's certificate (besides the system store).</summary>
    public string? UpstreamCa { get; init; }
    /// <summary>Whether `extensions:` was written (otherwise the defaults apply).</summary>
    public bool ExtensionsGiven { get; init; }
}

public enum ProxyProtocolVersion { None, V1, V2 }

public sealed record ListenerConfig
{
    public required string Name { get; init; }
    public required ListenerType Type { get; init; }
    public required HostPort Listen { get; init; }
    public bool Authenticate { get; init; }
    public string? Policy { get; init; }
    public TlsInspectionConfig? TlsInspection { get; init; }
    public Limits Limits { get; init; } = Limits.Default;
    public ImmutableArray<string> AcceptProxyProtocol { get; init; } = [];
    public ImmutableArray<TlsCertConfig> Tls { get; init; } = [];
    public ImmutableArray<RouteConfig> Routes { get; init; } = [];
    /// <summary>`upstream:`: host:port, or the name of an `upstreams:` group.</summary>
    public string? Upstream { get; init; }
    public FtpConfig? Ftp { get; init; }
    public SmtpConfig? Smtp { get; init; }
    public bool Socks4 { get; init; }
    public ProxyProtocolVersion ProxyProtocol { get; init; }
    /// <summary>http-reverse: add a Via header towards the upstream.</summary>
    public bool Via { get; init; }
    /// <summary>http-reverse: fronts whose X-Forwarded-* are kept and appended to.</summary>
    public ImmutableArray<string> TrustedProxies { get; init; } = [];
    /// <summary>`path_case`: whether path rules (and reverse routes) ignore case; insensitive unless said.</summary>
    public bool PathIgnoreCase { get; init; } = true;
    /// <summary>`ambiguous_paths`: refuse (400, the default) or pass targets backends may read differently.</summary>
    public AmbiguousTargets AmbiguousPaths { get; init; }
    /// <summary>`conflicting_headers: refuse`: 400 for a request whose header named by a rule has differing lines.</summary>
    public bool RefuseConflictingHeaders { get; init; }
    public SourcePos Pos { get; init; }
    /// <summary>Where each key's value was written, so that errors found later point at it.</summary>
    public ImmutableDictionary<string, SourcePos> KeyPos { get; init; } = ImmutableDictionary<string, SourcePos>.Empty;

    public SourcePos PosOf(string key) => KeyPos.TryGetValue(key, out var p) ? p : Pos;
}

public sealed record HealthConfig(string Path, TimeSpan Interval, TimeSpan Timeout, int Fails, int Passes, SourcePos Pos);

public sealed record UpstreamConfig(string Name, ImmutableArray<string> Targets, string Balance, HealthConfig? Health,
    string? CaFile, bool InsecureTls, SourcePos Pos);

/// <summary>One condition as written: a key and its values (a `not` holds nested conditions, a `header` a map).</summary>
public sealed record ConditionSpec(string Key, ImmutableArray<ValueSpec> Values,
    ImmutableArray<ConditionSpec> Nested, ImmutableArray<(ValueSpec Name, ImmutableArray<ValueSpec> Patterns)> HeaderMap,
    SourcePos Pos);

public readonly record struct ValueSpec(string Text, SourcePos Pos);

public enum Verdict : byte { Deny = 0, Allow = 1 }

public sealed record RuleConfig(Verdict Verdict, ImmutableArray<ConditionSpec> Conditions, string? Name, string? Reason, SourcePos Pos);

public sealed record PolicyConfig(string Name, Verdict Default, ImmutableArray<RuleConfig> Rules, SourcePos Pos);

public sealed record BastionConfig
{
    /// <summary>The file it was read from (null for the embedded default); relative paths are resolved against its folder.</summary>
    public string? Path { get; init; }
    public AdminConfig? Admin { get; init; }
    public LoggingConfig Logging { get; init; } = LoggingConfig.Default;
    public IdentityConfig? Identity { get; init; }
    public ImmutableDictionary<string, ListConfig> Lists { get; init; } = ImmutableDictionary<string, ListConfig>.Empty;
    public ImmutableArray<ListenerConfig> Listeners { get; init; } = [];
    public ImmutableDictionary<string, UpstreamConfig> Upstreams { get; init; } = ImmutableDictionary<string, UpstreamConfig>.Empty;
    public ImmutableDictionary<string, PolicyConfig> Policies { get; init; } = ImmutableDictionary<string, PolicyConfig>.Empty;
    public ResolverConfig? Resolver { get; init; }

    public string BaseDir => Path is null ? Directory.GetCurrentDirectory() : System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(Path))!;

    public string Resolve(string relative) => System.IO.Path.GetFullPath(relative, BaseDir);
}
