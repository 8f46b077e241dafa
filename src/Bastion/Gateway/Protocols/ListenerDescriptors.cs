using Bastion.Configuration;

namespace Bastion.Gateway;

/// <summary>
/// The listener types this build has: the one list that creating listeners, `check` (built types, attributes,
/// type-specific keys) and `explain` consult.
/// </summary>
public static class ListenerDescriptors
{
    public static readonly IReadOnlyList<IListenerDescriptor> All =
    [
        new Protocols.HttpProxy.HttpProxyDescriptor(),
        new Protocols.HttpReverse.HttpReverseDescriptor(),
        new Protocols.Socks5.Socks5Descriptor(),
        new Protocols.Tcp.TcpDescriptor(),
        new Protocols.Ftp.FtpDescriptor(),
        new Protocols.Smtp.SmtpDescriptor(),
    ];

    public static IListenerDescriptor? Find(ListenerType type)
    {
        foreach (var d in All)
            if (d.Type == type) return d;
        return null;
    }

    /// <summary>The built types' names, for messages: "http-proxy, http-reverse, socks5, tcp".</summary>
    public static string BuiltNames => string.Join(", ", All.Select(d => d.Name));
}
