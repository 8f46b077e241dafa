using Bastion.Configuration;

namespace Bastion.Hosting;

/// <summary>One line per listener type: the only place that knows every protocol.</summary>
public static class ListenerFactory
{
    public static IGatewayListener Create(ListenerContext ctx, ListenerConfig l) => l.Type switch
    {
        ListenerType.HttpProxy => new Http.Forward.HttpProxyListener(ctx),
        ListenerType.Socks5 => new Socks.Socks5Listener(ctx),
        ListenerType.Tcp => new Tcp.TcpRelayListener(ctx),
        ListenerType.HttpReverse => new Http.Reverse.ReverseProxyListener(ctx),
        _ => throw new NotSupportedException($"listener type '{ListenerTypes.Name(l.Type)}' is not built yet"),
    };
}
