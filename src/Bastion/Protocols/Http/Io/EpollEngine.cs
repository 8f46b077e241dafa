using System.Net;
using System.Net.Sockets;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// The plain-socket HTTP/1.1 path's own I/O engine: one loop thread per core, each with its own epoll set, sockets
/// registered once, edge-triggered for both directions. A socket here is never used with .NET's async socket API,
/// so the runtime's engine neither registers it nor tries a receive before waiting. Continuations run inline on the
/// loop thread (the request's code runs there, so it must never block). <c>BASTION_IO_ENGINE=dotnet</c> switches back
/// to the runtime's engine (<see cref="SocketDuplex"/>); other platforms than Linux x64 always use that.
/// </summary>
static class EpollEngine
{
    /// <summary>Whether plain sockets go through this engine.</summary>
    public static readonly bool Enabled = EpollNative.Supported
        && !string.Equals(Environment.GetEnvironmentVariable("BASTION_IO_ENGINE"), "dotnet", StringComparison.OrdinalIgnoreCase);

    static readonly Lazy<EpollLoop[]> Loops = new(() =>
    {
        var loops = new EpollLoop[Math.Max(1, Environment.ProcessorCount)];
        for (int i = 0; i < loops.Length; i++) loops[i] = new EpollLoop(i);
        return loops;
    });

    static int _next;

    /// <summary>The loop for a new socket (round-robin).</summary>
    public static EpollLoop Next()
    {
        var loops = Loops.Value;
        return loops[(int)((uint)Interlocked.Increment(ref _next) % (uint)loops.Length)];
    }

    /// <summary>
    /// Opens a TCP connection on the engine: a non-blocking connect completed by the socket's writable edge, each
    /// address in turn, within <paramref name="timeout"/> overall. The same outcomes as <c>Gateway.Connector</c>.
    /// </summary>
    public static async Task<(EpollDuplex? Io, SocketError Error, string? Message)> ConnectAsync(IReadOnlyList<IPAddress> addresses, int port,
        TimeSpan timeout, CancellationToken ct)
    {
        if (addresses.Count == 0) return (null, SocketError.HostNotFound, "no address");
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(ct);
        cts.CancelAfter(timeout);
        var last = SocketError.HostUnreachable;
        string? message = null;
        foreach (var ip in addresses)
        {
            var s = new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true, Blocking = false };
            var io = new EpollDuplex(s);
            var error = SocketError.Success;
            try { s.Connect(new IPEndPoint(ip, port)); }
            catch (SocketException e) { error = e.SocketErrorCode; }
            if (error is SocketError.WouldBlock or SocketError.InProgress)
            {
                using (cts.Token.UnsafeRegister(static d => ((EpollDuplex)d!).Abort(), io))
                    error = await io.WaitConnectedAsync().ConfigureAwait(false);
            }
            if (error == SocketError.Success) return (io, error, null);
            await io.DisposeAsync().ConfigureAwait(false);
            if (cts.IsCancellationRequested)
            {
                ct.ThrowIfCancellationRequested();
                return (null, SocketError.TimedOut, $"connect timed out after {timeout.TotalSeconds:0.#}s");
            }
            last = error;
            message = new SocketException((int)error).Message;
        }
        return (null, last, message);
    }
}

/// <summary>One epoll set and the thread that waits on it and runs what its sockets' edges wake.</summary>
sealed class EpollLoop
{
    readonly int _epfd;
    readonly Lock _lock = new();
    EpollDuplex?[] _slots = new EpollDuplex?[256];
    readonly Stack<int> _free = new();
    int _used;
    uint _generation;

    public EpollLoop(int index)
    {
        _epfd = EpollNative.Create();
        new Thread(Run) { IsBackground = true, Name = $"bastion-epoll-{index}" }.Start();
    }

    /// <summary>Registers a socket for both directions, edge-triggered, once for its life.</summary>
    public void Add(EpollDuplex d, Socket s)
    {
        int slot;
        uint gen;
        lock (_lock)
        {
            if (!_free.TryPop(out slot))
            {
                slot = _used++;
                if (slot == _slots.Length)
                {
                    var bigger = new EpollDuplex?[_slots.Length * 2];
                    _slots.CopyTo(bigger, 0);
                    Volatile.Write(ref _slots, bigger);
                }
            }
            gen = ++_generation;
            d.Slot = slot;
            d.Generation = gen;
            _slots[slot] = d;
        }
        const uint events = EpollNative.EPOLLIN | EpollNative.EPOLLOUT | EpollNative.EPOLLRDHUP | EpollNative.EPOLLET;
        if (!EpollNative.Control(_epfd, EpollNative.EPOLL_CTL_ADD, s.SafeHandle, events, (ulong)gen << 32 | (uint)slot))
            throw new SocketException((int)SocketError.OperationAborted);
    }

    /// <summary>Takes a socket out (before another engine uses it, or at its end); edges still queued for it are ignored.</summary>
    public void Remove(EpollDuplex d, Socket s)
    {
        EpollNative.Control(_epfd, EpollNative.EPOLL_CTL_DEL, s.SafeHandle, 0, 0);
        lock (_lock)
        {
            if (d.Slot >= 0 && ReferenceEquals(_slots[d.Slot], d))
            {
                _slots[d.Slot] = null;
                _free.Push(d.Slot);
            }
            d.Slot = -1;
        }
    }

    void Run()
    {
        var events = new EpollNative.Event[256];
        while (true)
        {
            int n = EpollNative.epoll_wait(_epfd, events, events.Length, -1);
            if (n < 0) continue; // EINTR
            var slots = Volatile.Read(ref _slots);
            for (int i = 0; i < n; i++)
            {
                ulong data = events[i].Data;
                int slot = (int)(uint)data;
                if ((uint)slot >= (uint)slots.Length) continue;
                var d = slots[slot];
                if (d is null || d.Generation != (uint)(data >> 32)) continue;
                uint e = events[i].Events;
                try
                {
                    if ((e & (EpollNative.EPOLLRDHUP | EpollNative.EPOLLHUP | EpollNative.EPOLLERR)) != 0) d.Receiving.HungUp();
                    else if ((e & EpollNative.EPOLLIN) != 0) d.Receiving.Edge();
                    if ((e & (EpollNative.EPOLLOUT | EpollNative.EPOLLHUP | EpollNative.EPOLLERR)) != 0) d.Sending.Edge();
                }
                catch (Exception ex) { Console.Error.WriteLine($"bastion: epoll continuation failed: {ex}"); }
            }
        }
    }
}
