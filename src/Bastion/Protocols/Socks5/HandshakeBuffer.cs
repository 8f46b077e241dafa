using System.Net.Sockets;

namespace Bastion.Protocols.Socks5;

/// <summary>
/// A small fixed buffer for reading a handshake off a socket: the parser looks at <see cref="Data"/>, the session
/// consumes what was parsed, and whatever the client sent past the handshake stays for the relay to forward.
/// </summary>
sealed class HandshakeBuffer(Socket socket, int capacity)
{
    readonly byte[] _buf = new byte[capacity];
    int _start, _end;

    public ReadOnlySpan<byte> Data => _buf.AsSpan(_start, _end - _start);

    public ReadOnlyMemory<byte> Remaining => _buf.AsMemory(_start, _end - _start);

    public void Consume(int n) => _start += n;

    /// <summary>Reads more; false when the peer closed or the buffer holds a message longer than any valid one.</summary>
    public async ValueTask<bool> FillAsync(CancellationToken ct)
    {
        if (_start > 0)
        {
            _buf.AsSpan(_start, _end - _start).CopyTo(_buf);
            _end -= _start;
            _start = 0;
        }
        if (_end == _buf.Length) return false;
        int n = await socket.ReceiveAsync(_buf.AsMemory(_end), SocketFlags.None, ct).ConfigureAwait(false);
        if (n == 0) return false;
        _end += n;
        return true;
    }
}
