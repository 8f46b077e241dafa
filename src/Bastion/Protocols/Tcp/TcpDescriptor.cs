using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Tcp;

/// <summary>tcp: the plain TCP relay.</summary>
public sealed class TcpDescriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.Tcp;
    public string Name => "tcp";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string> { "source", "user", "group", "port", "time", "not" };

    public IReadOnlyList<OwnKey> OwnKeys { get; } =
        [new OwnKey("proxy_protocol", l => l.ProxyProtocol != ProxyProtocolVersion.None, "proxy_protocol (towards the upstream) is for tcp listeners")];

    public void Validate(BastionConfig root, ListenerConfig l, Action<SourcePos, string> error)
    {
        if (l.Upstream is null) error(l.Pos, $"listener '{l.Name}': tcp needs 'upstream: host:port' or an upstream group name");
        else if (!root.Upstreams.ContainsKey(l.Upstream) && !HostPort.TryParse(l.Upstream, out _))
            error(l.PosOf("upstream"), $"listener '{l.Name}': upstream '{l.Upstream}' is neither host:port nor a group under 'upstreams:'");
    }

    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error)
    {
        error = null;
        if (!HostPort.TryParse(HeaderValue.TrimOws(request).ToString(), out var t)) { error = $"'{request}' is not host:port"; return false; }
        // The port the client dials; a fixed upstream's own port stands instead, as live.
        a.Port = StreamUpstreams.PolicyPort(listener, runtime.Config, t!.Port);
        return true;
    }

    public IGatewayListener Create(ListenerContext ctx) => new TcpRelayListener(ctx);
}
