using System.Net;
using System.Net.Sockets;
using Bastion.Configuration;

namespace Bastion.Gateway;

/// <summary>Listen addresses and listening sockets, for every listener and the admin page.</summary>
public static class ListenSockets
{
    /// <summary>
    /// The endpoint a `listen:` address binds: an IP literal, `localhost` (127.0.0.1) or `*` (every IPv4 address).
    /// Names are refused rather than resolved (`check` says so first): a listener never depends on DNS.
    /// </summary>
    public static IPEndPoint EndPoint(HostPort listen) => listen.ToIPEndPoint()
        ?? throw new InvalidOperationException($"listen host '{listen.Host}' must be an IP address, localhost or *");

    /// <summary>A bound, listening TCP socket (dual-stack on `[::]`), ready to accept.</summary>
    public static Socket Open(IPEndPoint ep, int backlog = 4096)
    {
        var s = new Socket(ep.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            AllowRebind(s);
            if (ep.AddressFamily == AddressFamily.InterNetworkV6 && ep.Address.Equals(IPAddress.IPv6Any)) s.DualMode = true;
            s.Bind(ep);
            if (backlog > 0) s.Listen(backlog);
            return s;
        }
        catch
        {
            s.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Lets a restarted or re-bound listener take its port back while old connections sit in TIME_WAIT, and
    /// nothing more. SocketOptionName.ReuseAddress must not be used for this: on Linux .NET maps it to
    /// SO_REUSEADDR plus SO_REUSEPORT, which lets a second process bind the same port silently and receive
    /// a share of its connections.
    /// </summary>
    public static void AllowRebind(Socket s)
    {
        if (OperatingSystem.IsLinux()) s.SetRawSocketOption(1 /* SOL_SOCKET */, 2 /* SO_REUSEADDR */, BitConverter.GetBytes(1));
        else if (OperatingSystem.IsMacOS() || OperatingSystem.IsFreeBSD()) s.SetRawSocketOption(0xffff, 0x4, BitConverter.GetBytes(1));
        // Windows: a closed listener's port is free at once; SO_REUSEADDR there would allow stealing it.
    }
}
