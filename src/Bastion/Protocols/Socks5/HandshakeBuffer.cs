using System.Buffers;
using System.IO.Pipelines;

namespace Bastion.Protocols.Socks5;

/// <summary>
/// A handshake read off the client's pipe: the parser looks at <see cref="Data"/> (at most capacity bytes, in one
/// span), the session consumes what was parsed, and <see cref="Release"/> hands whatever the client sent past the
/// handshake back to the pipe, where the relay takes it first.
/// </summary>
sealed class HandshakeBuffer(PipeReader input, int capacity)
{
    ReadOnlySequence<byte> _seq;
    long _consumed;
    bool _holding;
    byte[]? _scratch;

    public ReadOnlySpan<byte> Data
    {
        get
        {
            var rest = _seq.Slice(_consumed);
            if (rest.Length > capacity) rest = rest.Slice(0, capacity);
            if (rest.IsSingleSegment) return rest.FirstSpan;
            _scratch ??= new byte[capacity];
            rest.CopyTo(_scratch);
            return _scratch.AsSpan(0, (int)rest.Length);
        }
    }

    public void Consume(int n) => _consumed += n;

    /// <summary>Reads more; false when the peer closed or the buffer holds a message longer than any valid one.</summary>
    public async ValueTask<bool> FillAsync(CancellationToken ct)
    {
        long had = _seq.Length - _consumed;
        if (had >= capacity) return false;
        if (_holding) input.AdvanceTo(_seq.GetPosition(_consumed), _seq.End);
        _holding = false;
        var r = await input.ReadAsync(ct).ConfigureAwait(false);
        _seq = r.Buffer;
        _consumed = 0;
        _holding = true;
        return _seq.Length > had;
    }

    /// <summary>Gives the unconsumed rest back to the pipe (for the relay, or for whoever reads next).</summary>
    public void Release()
    {
        if (!_holding) return;
        input.AdvanceTo(_seq.GetPosition(_consumed));
        _holding = false;
    }
}
