using Bastion.Configuration;
using Bastion.Gateway;
using Bastion.Hosting;
using Bastion.Policy;

namespace Bastion.Protocols.Socks5;

/// <summary>socks5: SOCKS5 (and 4/4a) with policy per connection and per UDP datagram.</summary>
public sealed class Socks5Descriptor : IListenerDescriptor
{
    public ListenerType Type => ListenerType.Socks5;
    public string Name => "socks5";
    public IReadOnlySet<string> Attributes { get; } = new HashSet<string> { "source", "user", "group", "host", "port", "time", "not" };

    public void Validate(BastionConfig root, ListenerConfig listener, Action<SourcePos, string> error) { }

    public bool TryExplain(string request, ListenerConfig listener, Runtime runtime, RequestAttributes a, out string? error)
    {
        error = null;
        if (!HostPort.TryParse(HeaderValue.TrimOws(request).ToString(), out var t)) { error = $"'{request}' is not host:port"; return false; }
        Socks5Session.Fill(a, t!.Host, t.Port);
        return true;
    }

    public IGatewayListener Create(ListenerContext ctx) => new Socks5Listener(ctx);
}
