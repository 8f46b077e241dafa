using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// A plain socket on the <see cref="EpollEngine"/>: non-blocking, registered once, each direction a
/// <see cref="Readiness"/> (a readiness flag and one reusable awaitable). A receive that fills less than its buffer
/// drained the socket, so the next one waits for the edge rather than trying and getting EAGAIN.
/// </summary>
sealed class EpollDuplex : Duplex
{
    readonly Socket _socket;
    readonly EpollLoop _loop;
    internal int Slot = -1;
    internal uint Generation;
    internal readonly ReceiveSide Receiving;
    internal readonly SendSide Sending;

    public EpollDuplex(Socket socket)
    {
        _socket = socket;
        socket.Blocking = false;
        Receiving = new ReceiveSide(socket);
        Sending = new SendSide(socket);
        _loop = EpollEngine.Next();
        _loop.Add(this, socket);
    }

    public override Socket Socket => _socket;

    public override ValueTask<int> ReceiveAsync(Memory<byte> buffer) => Receiving.Start(buffer, null);

    internal override ValueTask<int> ReceiveIntoAsync(Memory<byte> buffer, Peer? peer) => Receiving.Start(buffer, peer);

    public override ValueTask SendAsync(ReadOnlyMemory<byte> data) => Sending.Start(data);

    /// <summary>Waits for a non-blocking connect to finish: its outcome from SO_ERROR.</summary>
    internal async ValueTask<SocketError> WaitConnectedAsync()
    {
        while (true)
        {
            // Edges from before this check (registration reports an unconnected socket's state) are forgotten first.
            Sending.NotReady();
            try
            {
                int v = (int)_socket.GetSocketOption(SocketOptionLevel.Socket, SocketOptionName.Error)!;
                if (v != 0) return Enum.IsDefined((SocketError)v) ? (SocketError)v : EpollNative.ToSocketError(v);
                // Connected polls the socket after a non-blocking connect and records the end point when it is done.
                if (_socket.Connected)
                {
                    // Connected and writable (its edge may have been forgotten above).
                    Sending.MarkReady();
                    return SocketError.Success;
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException) { return SocketError.OperationAborted; }
            await Sending.Start(ReadOnlyMemory<byte>.Empty).ConfigureAwait(false);
        }
    }

    public override ValueTask ShutdownSendAsync()
    {
        try { _socket.Shutdown(SocketShutdown.Send); }
        catch (Exception e) when (e is SocketException or ObjectDisposedException) { }
        return ValueTask.CompletedTask;
    }

    /// <summary>Shutdowns and closes from other threads wake what waits (a closed socket sends no edge).</summary>
    protected override void Woken()
    {
        Receiving.Wake();
        Sending.Wake();
    }

    public override void Detach()
    {
        if (Slot < 0) return;
        _loop.Remove(this, _socket);
        try { _socket.Blocking = true; }
        catch (ObjectDisposedException) { }
    }

    public override ValueTask DisposeAsync()
    {
        if (Slot >= 0) _loop.Remove(this, _socket);
        try { _socket.Dispose(); }
        catch (ObjectDisposedException) { }
        Woken();
        return ValueTask.CompletedTask;
    }
}

/// <summary>
/// One direction of an <see cref="EpollDuplex"/>. <c>_ready</c> is cleared before every attempt and set by every edge,
/// so an edge that arrives during an attempt is never lost; the waiter is armed after a failed attempt and the flag
/// checked again, and whoever takes the armed flag back (the edge or the caller) makes the next attempt: a receive
/// issued from any thread and an edge from the loop cannot both complete it, nor both miss.
/// </summary>
abstract class Readiness
{
    protected readonly Socket Socket;
    protected ManualResetValueTaskSourceCore<int> Core = new() { RunContinuationsAsynchronously = false };
    int _ready = 1, _armed;

    protected Readiness(Socket socket) => Socket = socket;

    /// <summary>One attempt: true when finished (result or error), false when it would block.</summary>
    protected abstract bool Attempt(out int result, out SocketException? error);

    /// <summary>Attempts while the socket is ready; false when it must wait for an edge.</summary>
    protected bool Run(out int result, out SocketException? error)
    {
        while (Interlocked.Exchange(ref _ready, 0) == 1)
            if (Attempt(out result, out error)) return true;
        result = 0;
        error = null;
        return false;
    }

    /// <summary>Forgets earlier edges: only one after this call makes the socket ready (a connect in progress).</summary>
    public void NotReady() => Interlocked.Exchange(ref _ready, 0);

    /// <summary>The attempt left the socket possibly ready (a full buffer, an end, an error): the next call tries at once.</summary>
    protected void StillReady() => Volatile.Write(ref _ready, 1);

    /// <summary>Known ready without an edge (a connect that finished).</summary>
    public void MarkReady() => Interlocked.Exchange(ref _ready, 1);

    /// <summary>After a failed attempt: arm, unless an edge came in between (then true: attempt again now).</summary>
    protected bool Arm()
    {
        Core.Reset();
        Interlocked.Exchange(ref _armed, 1);
        return Volatile.Read(ref _ready) == 1 && Interlocked.Exchange(ref _armed, 0) == 1;
    }

    /// <summary>An edge (on the loop thread).</summary>
    public void Edge()
    {
        Interlocked.Exchange(ref _ready, 1);
        if (Volatile.Read(ref _armed) == 1 && Interlocked.Exchange(ref _armed, 0) == 1) Complete();
    }

    /// <summary>From another thread (a shutdown, a close): the waiter, if any, attempts again on the pool.</summary>
    public void Wake()
    {
        Interlocked.Exchange(ref _ready, 1);
        if (Volatile.Read(ref _armed) == 1 && Interlocked.Exchange(ref _armed, 0) == 1)
            ThreadPool.UnsafeQueueUserWorkItem(static r => r.Complete(), this, preferLocal: false);
    }

    void Complete()
    {
        while (true)
        {
            if (Run(out int n, out var error))
            {
                Finish();
                if (error is null) Core.SetResult(n);
                else Core.SetException(error);
                return;
            }
            Interlocked.Exchange(ref _armed, 1);
            if (!(Volatile.Read(ref _ready) == 1 && Interlocked.Exchange(ref _armed, 0) == 1)) return;
        }
    }

    /// <summary>Drops the operation's buffer before its continuation runs.</summary>
    protected abstract void Finish();

    protected static SocketException Error(int errno) => new((int)EpollNative.ToSocketError(errno));
}

sealed class ReceiveSide(Socket socket) : Readiness(socket), IValueTaskSource<int>
{
    Memory<byte> _buffer;
    int _hangup;

    /// <summary>
    /// The peer closed (EPOLLRDHUP/HUP/ERR): its edge comes once and the end is read only after the data before it, so
    /// from now every receive tries (as nginx's pending_eof).
    /// </summary>
    public void HungUp()
    {
        Volatile.Write(ref _hangup, 1);
        Edge();
    }

    Peer? _peer;
    Peer? _taking;
    /// <summary>The peer whose buffer is taken only when the socket is readable (a receive started with none).</summary>
    Peer? _lazy;

    /// <summary>
    /// Receives into <paramref name="buffer"/>, or, when it is empty, into <paramref name="peer"/>'s buffer taken at the
    /// moment of the read (so that a connection waiting for bytes holds none).
    /// </summary>
    public ValueTask<int> Start(Memory<byte> buffer, Peer? peer)
    {
        _buffer = buffer;
        _lazy = buffer.IsEmpty ? peer : null;
        while (true)
        {
            if (Run(out int n, out var error))
            {
                _buffer = default;
                _lazy = null;
                if (error is not null) return ValueTask.FromException<int>(error);
                peer?.Received(n);
                return new ValueTask<int>(n);
            }
            _peer = peer;
            if (!Arm()) return new ValueTask<int>(this, Core.Version);
        }
    }

    protected override bool Attempt(out int result, out SocketException? error)
    {
        var lazy = _lazy;
        var buffer = lazy is null ? _buffer.Span : lazy.ReceiveMemory().Span;
        int n = EpollNative.Transfer(Socket.SafeHandle, buffer, receive: true);
        error = null;
        result = n;
        if (n == -EpollNative.EAGAIN)
        {
            lazy?.ReceiveFailed();
            return false;
        }
        // Less than the buffer: the socket is drained and the next receive waits for an edge. A full buffer, an end,
        // an error or a hang-up seen: the next receive tries at once.
        if (n < 0)
        {
            error = Error(-n);
            result = 0;
            lazy?.ReceiveFailed();
        }
        if (n <= 0 || n == buffer.Length || Volatile.Read(ref _hangup) != 0) StillReady();
        return true;
    }

    protected override void Finish()
    {
        _buffer = default;
        _lazy = null;
        _taking = _peer;
        _peer = null;
    }

    public int GetResult(short token)
    {
        var peer = _taking;
        _taking = null;
        int n = Core.GetResult(token);
        peer?.Received(n);
        return n;
    }

    public ValueTaskSourceStatus GetStatus(short token) => Core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        Core.OnCompleted(continuation, state, token, flags);
}

sealed class SendSide(Socket socket) : Readiness(socket), IValueTaskSource
{
    ReadOnlyMemory<byte> _data;

    /// <summary>Sends all of <paramref name="data"/> (empty: waits until the socket is writable, for a connect).</summary>
    public ValueTask Start(ReadOnlyMemory<byte> data)
    {
        _data = data;
        while (true)
        {
            if (Run(out _, out var error))
            {
                _data = default;
                return error is null ? ValueTask.CompletedTask : ValueTask.FromException(error);
            }
            if (!Arm()) return new ValueTask(this, Core.Version);
        }
    }

    protected override bool Attempt(out int result, out SocketException? error)
    {
        result = 0;
        error = null;
        while (!_data.IsEmpty)
        {
            int n = EpollNative.Transfer(Socket.SafeHandle, System.Runtime.InteropServices.MemoryMarshal.AsMemory(_data).Span, receive: false);
            if (n == -EpollNative.EAGAIN) return false;
            if (n < 0)
            {
                error = Error(-n);
                StillReady();
                return true;
            }
            _data = _data[n..];
        }
        StillReady();
        return true;
    }

    protected override void Finish() => _data = default;

    public void GetResult(short token) => Core.GetResult(token);

    public ValueTaskSourceStatus GetStatus(short token) => Core.GetStatus(token);

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        Core.OnCompleted(continuation, state, token, flags);
}
