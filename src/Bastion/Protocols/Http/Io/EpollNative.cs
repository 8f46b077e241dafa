using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Bastion.Protocols.Http.Io;

/// <summary>The few libc calls the epoll engine makes (Linux x64: <c>struct epoll_event</c> is packed there).</summary>
static class EpollNative
{
    public const int EPOLL_CTL_ADD = 1, EPOLL_CTL_DEL = 2;
    public const uint EPOLLIN = 0x001, EPOLLOUT = 0x004, EPOLLERR = 0x008, EPOLLHUP = 0x010, EPOLLRDHUP = 0x2000, EPOLLET = 1u << 31;
    const int EPOLL_CLOEXEC = 0x80000;
    public const int EAGAIN = 11, EINTR = 4;
    const int MSG_NOSIGNAL = 0x4000;

    [StructLayout(LayoutKind.Sequential, Pack = 4)]
    public struct Event
    {
        public uint Events;
        public ulong Data;
    }

    /// <summary>Where the engine can run: Linux on x64 (elsewhere the struct layout differs; the .NET engine serves).</summary>
    public static bool Supported => OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64;

    [DllImport("libc", SetLastError = true)]
    static extern int epoll_create1(int flags);

    [DllImport("libc", SetLastError = true)]
    static extern int epoll_ctl(int epfd, int op, int fd, ref Event ev);

    [DllImport("libc", SetLastError = true)]
    public static extern int epoll_wait(int epfd, [Out] Event[] events, int maxevents, int timeout);

    [DllImport("libc", SetLastError = true)]
    static extern nint recv(int fd, ref byte buf, nint len, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern nint send(int fd, ref byte buf, nint len, int flags);

    public static int Create()
    {
        int fd = epoll_create1(EPOLL_CLOEXEC);
        if (fd < 0) throw new SocketException(Marshal.GetLastPInvokeError());
        return fd;
    }

    /// <summary>Adds or removes a socket; the handle is held so that a concurrent close cannot hand its number to another.</summary>
    public static bool Control(int epfd, int op, SafeHandle h, uint events, ulong data)
    {
        bool added = false;
        try
        {
            h.DangerousAddRef(ref added);
            var ev = new Event { Events = events, Data = data };
            return epoll_ctl(epfd, op, (int)h.DangerousGetHandle(), ref ev) == 0;
        }
        catch (ObjectDisposedException) { return false; }
        finally { if (added) h.DangerousRelease(); }
    }

    /// <summary>One recv or send: the count, or -errno (-EAGAIN when it would block). A closed handle is -EBADF.</summary>
    public static int Transfer(SafeHandle h, Span<byte> buf, bool receive)
    {
        bool added = false;
        try
        {
            h.DangerousAddRef(ref added);
            int fd = (int)h.DangerousGetHandle();
            while (true)
            {
                nint n = receive
                    ? recv(fd, ref MemoryMarshal.GetReference(buf), buf.Length, 0)
                    : send(fd, ref MemoryMarshal.GetReference(buf), buf.Length, MSG_NOSIGNAL);
                if (n >= 0) return (int)n;
                int errno = Marshal.GetLastPInvokeError();
                if (errno != EINTR) return -errno;
            }
        }
        catch (ObjectDisposedException) { return -9; }
        finally { if (added) h.DangerousRelease(); }
    }

    /// <summary>The socket error an errno means (the ones a peer or a close cause; others keep the generic code).</summary>
    public static SocketError ToSocketError(int errno) => errno switch
    {
        104 => SocketError.ConnectionReset,
        32 => SocketError.Shutdown,
        9 => SocketError.OperationAborted,
        107 => SocketError.NotConnected,
        110 => SocketError.TimedOut,
        111 => SocketError.ConnectionRefused,
        113 => SocketError.HostUnreachable,
        101 => SocketError.NetworkUnreachable,
        103 => SocketError.ConnectionAborted,
        _ => SocketError.SocketError,
    };
}
