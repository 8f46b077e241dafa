using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Bastion.Hosting;

/// <summary>
/// sd_notify(3) without libsystemd: under a `Type=notify` unit systemd names a datagram socket in NOTIFY_SOCKET and
/// waits for READY=1 before it calls the service started; RELOADING=1 ... READY=1 frames a reload and STOPPING=1
/// begins the stop. Outside systemd (no NOTIFY_SOCKET) every call does nothing. Failures to send are ignored: the
/// gateway must serve whether or not its supervisor listens.
/// </summary>
public sealed class SystemdNotifier : IDisposable
{
    readonly Socket? _socket;
    readonly UnixDomainSocketEndPoint? _target;

    public SystemdNotifier(string? notifySocket = null)
    {
        notifySocket ??= Environment.GetEnvironmentVariable("NOTIFY_SOCKET");
        if (string.IsNullOrEmpty(notifySocket) || (notifySocket[0] != '/' && notifySocket[0] != '@')) return;
        try
        {
            // '@' names a socket in the abstract namespace, written with a leading NUL.
            _target = new UnixDomainSocketEndPoint(notifySocket[0] == '@' ? "\0" + notifySocket[1..] : notifySocket);
            _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        }
        catch (Exception e) when (e is SocketException or ArgumentException) { _socket = null; }
    }

    public bool Enabled => _socket is not null;

    public void Ready(string status) => Send($"READY=1\nSTATUS={status}\nMAINPID={Environment.ProcessId}");

    /// <summary>A reload begins; systemd shows the unit as reloading until the next READY=1.</summary>
    public void Reloading() => Send($"RELOADING=1\nMONOTONIC_USEC={MonotonicMicroseconds()}\nSTATUS=reloading");

    public void Stopping(string status) => Send($"STOPPING=1\nSTATUS={status}");

    public void Status(string status) => Send($"STATUS={status}");

    void Send(string message)
    {
        if (_socket is null || _target is null) return;
        try { _socket.SendTo(Encoding.UTF8.GetBytes(message), _target); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
    }

    /// <summary>CLOCK_MONOTONIC in µs, which is what Stopwatch reads on Linux.</summary>
    static long MonotonicMicroseconds() => Stopwatch.GetTimestamp() / (Stopwatch.Frequency / 1_000_000);

    public void Dispose() => _socket?.Dispose();
}
