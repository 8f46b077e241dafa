using System.Net.Sockets;

namespace Bastion.Hosting;

/// <summary>Socket options for listening sockets.</summary>
public static class ListenSockets
{
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
