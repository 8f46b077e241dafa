using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Ftp;

/// <summary>ftp: the FTP gateway (command and path policy, its own data connections, FTPS on either side).</summary>
public sealed class FtpDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.Ftp;
    public string Name => "ftp";
    public IReadOnlySet<string> Attributes { get; } =
        new HashSet<string> { "source", "user", "group", "host", "port", "command", "path", "time", "not" };

    /// <summary>`user` is the login the server accepted.</summary>
    public bool AlwaysHasUser => true;

    public IReadOnlyList<OwnKey> OwnKeys { get; } = [new OwnKey("ftp", l => l.Ftp is not null, "the 'ftp:' section is for ftp listeners")];

    public bool HasResponsePhase => false;

    public void Validate(BastionConfig root, ListenerConfig l, Action<SourcePos, string> error)
    {
        if (l.Upstream is { } u && !root.Upstreams.ContainsKey(u) && !HostPort.TryParse(u, out _))
            error(l.PosOf("upstream"), $"listener '{l.Name}': upstream '{u}' is neither host:port nor a group under 'upstreams:'");
        if (l.Authenticate)
            error(l.PosOf("authenticate"), $"listener '{l.Name}': ftp relays the login to the server; 'authenticate' is not supported (use user/group rules)");
        if (!l.Tls.IsEmpty)
            error(l.PosOf("tls"), $"listener '{l.Name}': for ftp, the certificate goes under 'ftp: {{ tls: {{cert, key}} }}' (AUTH TLS)");
        if (l.Ftp is not { } f) return;
        if (f.Tls is { } t)
        {
            if (!File.Exists(root.Resolve(t.Cert))) error(t.Pos, $"listener '{l.Name}': cannot read certificate {root.Resolve(t.Cert)}");
            if (!File.Exists(root.Resolve(t.Key))) error(t.Pos, $"listener '{l.Name}': cannot read key {root.Resolve(t.Key)}");
        }
        if (f.UpstreamCa is { } ca && !File.Exists(root.Resolve(ca)))
            error(f.UpstreamCaPos, $"listener '{l.Name}': cannot read upstream_ca {root.Resolve(ca)}");
    }

    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error) =>
        FtpAttributes.TryExplain(HeaderValue.TrimOws(request).ToString(), FixedServer(listener), listener.Upstream is null, a, out error);

    /// <summary>
    /// The server the policy sees as `host`/`port` before any command: a fixed `upstream: host:port`. A group's
    /// target is the gateway's choice, so with a group neither is set; without an upstream, USER names it.
    /// </summary>
    public static HostPort? FixedServer(ListenerConfig l) => l.Upstream is { } u && HostPort.TryParse(u, out var hp) ? hp : null;

    public IGatewayListener Create(ListenerContext ctx) => new FtpListener(ctx);
}
