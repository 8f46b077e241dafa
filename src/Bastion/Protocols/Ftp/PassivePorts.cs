using System.Net;
using System.Net.Sockets;

namespace Bastion.Protocols.Ftp;

/// <summary>
/// Opens the listening sockets for data connections in `passive_ports` (or on an OS-picked port when none is
/// configured). One per listener, shared by its sessions: a rotating start spreads sessions over the range, and a
/// port in use (by another session or another program) is skipped.
/// </summary>
public sealed class PassivePorts(int low, int high)
{
    int _next;

    public int Low => low;
    public int High => high;
    public bool IsRange => low > 0;

    /// <summary>A socket listening on <paramref name="address"/>, or null when every port in the range is taken.</summary>
    public Socket? Listen(IPAddress address)
    {
        if (!IsRange) return TryListen(address, 0);
        int count = high - low + 1;
        int start = (int)((uint)Interlocked.Increment(ref _next) % (uint)count);
        for (int i = 0; i < count; i++)
        {
            var s = TryListen(address, low + (start + i) % count);
            if (s is not null) return s;
        }
        return null;
    }

    static Socket? TryListen(IPAddress address, int port)
    {
        var s = new Socket(address.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            s.Bind(new IPEndPoint(address, port));
            s.Listen(4);
            return s;
        }
        catch (SocketException)
        {
            s.Dispose();
            return null;
        }
    }
}
