using System.Net.Sockets;
using System.Threading.Tasks.Sources;

namespace Bastion.Protocols.Http.Io;

/// <summary>
/// One direction of a plain socket (receive or send), awaitable again and again without allocating: the connection
/// owns one per direction (as Kestrel's SocketReceiver/SocketSender do). The socket engine completes it on its own
/// thread and the continuation runs right there (no execution context captured, no thread-pool hop), so a request's
/// code runs on the thread that saw the bytes arrive. A receive can carry the <see cref="Peer"/> whose buffer it
/// fills: the peer's counters move when the result is taken, so <see cref="Peer.ReceiveAsync"/> needs no async layer
/// of its own.
/// </summary>
sealed class SocketOperation() : SocketAsyncEventArgs(true), IValueTaskSource<int>
{
    /// <summary>Set in place of a continuation once the operation has completed.</summary>
    static readonly Action<object?> Done = static _ => { };

    Action<object?>? _continuation;
    object? _state;
    Peer? _peer;
    int _busy;

    /// <summary>Claims the operation; false while one is still in flight (the caller takes the socket's own path).</summary>
    public bool TryBegin() => Interlocked.Exchange(ref _busy, 1) == 0;

    public ValueTask<int> ReceiveAsync(Socket socket, Memory<byte> buffer, Peer? peer)
    {
        SetBuffer(buffer);
        _peer = peer;
        return socket.ReceiveAsync(this) ? new ValueTask<int>(this, 0) : CompletedNow();
    }

    public ValueTask<int> SendAsync(Socket socket, ReadOnlyMemory<byte> data)
    {
        // The engine only reads a send's buffer.
        SetBuffer(System.Runtime.InteropServices.MemoryMarshal.AsMemory(data));
        _peer = null;
        return socket.SendAsync(this) ? new ValueTask<int>(this, 0) : CompletedNow();
    }

    /// <summary>Finished at once (the common case for sends, and for receives with bytes already there).</summary>
    ValueTask<int> CompletedNow()
    {
        _continuation = null;
        var error = SocketError;
        if (error != SocketError.Success) return ValueTask.FromException<int>(End(error));
        int n = Take();
        return new ValueTask<int>(n);
    }

    int Take()
    {
        int n = BytesTransferred;
        var peer = _peer;
        _peer = null;
        SetBuffer(Memory<byte>.Empty);
        Volatile.Write(ref _busy, 0);
        peer?.Received(n);
        return n;
    }

    SocketException End(SocketError error)
    {
        _peer = null;
        SetBuffer(Memory<byte>.Empty);
        Volatile.Write(ref _busy, 0);
        return new SocketException((int)error);
    }

    protected override void OnCompleted(SocketAsyncEventArgs e)
    {
        var c = _continuation;
        if (c is not null || (c = Interlocked.CompareExchange(ref _continuation, Done, null)) is not null)
        {
            var state = _state;
            _state = null;
            _continuation = Done;
            c(state);
        }
    }

    public int GetResult(short token)
    {
        _continuation = null;
        var error = SocketError;
        if (error != SocketError.Success) throw End(error);
        return Take();
    }

    public ValueTaskSourceStatus GetStatus(short token) =>
        !ReferenceEquals(_continuation, Done) ? ValueTaskSourceStatus.Pending
        : SocketError == SocketError.Success ? ValueTaskSourceStatus.Succeeded
        : ValueTaskSourceStatus.Faulted;

    public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags)
    {
        // Flags are ignored on purpose: nothing on this path uses an execution context or a synchronization context.
        _state = state;
        if (ReferenceEquals(_continuation, Done) || ReferenceEquals(Interlocked.CompareExchange(ref _continuation, continuation, null), Done))
        {
            // It completed in between: run it on the pool rather than deeper in this stack.
            _state = null;
            ThreadPool.UnsafeQueueUserWorkItem(continuation, state, preferLocal: true);
        }
    }
}
