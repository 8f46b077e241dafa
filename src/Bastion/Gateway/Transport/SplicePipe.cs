using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Bastion.Gateway;

/// <summary>
/// A kernel pipe for splice(2) on Linux: socket → pipe → socket moves bytes without copying them through user
/// memory, and in chunks as large as the pipe (1 MiB where the kernel allows), so a bulk transfer costs a few
/// system calls and wake-ups per MiB instead of one per 64 KiB buffer. Every call is non-blocking; the relay waits
/// for readiness through the socket's own async API. Nothing here throws for I/O: calls return bytes or -errno.
/// </summary>
/// <remarks>
/// Each splice holds a reference on the socket's SafeHandle for the length of the call, so a concurrent close (an
/// abort, a drain) can never make the relay splice into a descriptor number that was reused meanwhile.
/// </remarks>
sealed class SplicePipe : IDisposable
{
    /// <summary>Bytes asked for per splice; the pipe's size bounds what one call moves.</summary>
    const int WantedSize = 1024 * 1024;
    const int EAGAIN = 11;
    const int O_NONBLOCK = 0x800, O_CLOEXEC = 0x80000;
    const int F_GETFL = 3, F_SETPIPE_SZ = 1031, F_GETPIPE_SZ = 1032;
    const uint SPLICE_F_MOVE = 1, SPLICE_F_NONBLOCK = 2;

    readonly SafeFileHandle _read, _write;

    SplicePipe(int read, int write, int size)
    {
        _read = new SafeFileHandle(read, ownsHandle: true);
        _write = new SafeFileHandle(write, ownsHandle: true);
        Size = size;
    }

    static long _created;

    /// <summary>Pipes made so far (for tests: proof that a relay switched to splice).</summary>
    internal static long Created => Interlocked.Read(ref _created);

    /// <summary>What the pipe holds at most: the largest chunk one call moves.</summary>
    public int Size { get; }

    static int _unsupported = OperatingSystem.IsLinux() ? 0 : 1;

    /// <summary>
    /// A pipe for relaying from <paramref name="from"/> to <paramref name="to"/>, or null where splice cannot work
    /// (not Linux, no pipe left, a socket left in blocking mode): the relay then goes on copying.
    /// </summary>
    public static SplicePipe? TryCreate(Socket from, Socket to)
    {
        if (Volatile.Read(ref _unsupported) != 0) return null;
        try
        {
            // Non-blocking sockets only: a blocking one would let splice park a thread-pool thread.
            if (!NonBlocking(from) || !NonBlocking(to)) return null;
            Span<int> fds = stackalloc int[2];
            if (pipe2(ref MemoryMarshal.GetReference(fds), O_NONBLOCK | O_CLOEXEC) != 0) return null;
            // Over the per-user pipe budget the kernel refuses a bigger pipe: the default one still works.
            fcntl(fds[1], F_SETPIPE_SZ, WantedSize);
            int size = fcntl(fds[1], F_GETPIPE_SZ, 0);
            Interlocked.Increment(ref _created);
            return new SplicePipe(fds[0], fds[1], size > 0 ? size : 64 * 1024);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            Volatile.Write(ref _unsupported, 1);
            return null;
        }
    }

    static bool NonBlocking(Socket s)
    {
        var h = s.SafeHandle;
        bool added = false;
        try
        {
            h.DangerousAddRef(ref added);
            int flags = fcntl((int)h.DangerousGetHandle(), F_GETFL, 0);
            return flags >= 0 && (flags & O_NONBLOCK) != 0;
        }
        finally
        {
            if (added) h.DangerousRelease();
        }
    }

    /// <summary>Socket → pipe (the pipe must be empty): bytes moved, 0 at end of stream, or -errno (-EAGAIN: nothing to read yet).</summary>
    public long Fill(Socket from) => Move(from.SafeHandle, _write, Size);

    /// <summary>Pipe → socket: bytes moved (at most <paramref name="max"/>), or -errno (-EAGAIN: the socket's send buffer is full).</summary>
    public long Drain(Socket to, long max) => Move(_read, to.SafeHandle, max);

    /// <summary>Pipe → memory, for sending through the socket API when the socket would block: bytes read or -errno.</summary>
    public int Read(Span<byte> buffer)
    {
        bool added = false;
        try
        {
            _read.DangerousAddRef(ref added);
            nint n = read((int)_read.DangerousGetHandle(), ref MemoryMarshal.GetReference(buffer), buffer.Length);
            return n >= 0 ? (int)n : -Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (added) _read.DangerousRelease();
        }
    }

    public static bool WouldBlock(long result) => result == -EAGAIN;

    static long Move(SafeHandle from, SafeHandle to, long max)
    {
        bool a = false, b = false;
        try
        {
            from.DangerousAddRef(ref a);
            to.DangerousAddRef(ref b);
            nint n = splice((int)from.DangerousGetHandle(), 0, (int)to.DangerousGetHandle(), 0, (nuint)max, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            return n >= 0 ? n : -Marshal.GetLastPInvokeError();
        }
        finally
        {
            if (b) to.DangerousRelease();
            if (a) from.DangerousRelease();
        }
    }

    public void Dispose()
    {
        _read.Dispose();
        _write.Dispose();
    }

    [DllImport("libc", SetLastError = true)]
    static extern nint splice(int fdIn, nint offIn, int fdOut, nint offOut, nuint len, uint flags);

    [DllImport("libc", SetLastError = true)]
    static extern int pipe2(ref int fds, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern int fcntl(int fd, int cmd, int arg);

    [DllImport("libc", SetLastError = true)]
    static extern nint read(int fd, ref byte buffer, nint count);
}
