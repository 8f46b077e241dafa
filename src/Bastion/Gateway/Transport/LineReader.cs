using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using Bastion.Protocols.Http.Io;

namespace Bastion.Gateway;

/// <summary>One read of a <see cref="LineReader"/>.</summary>
public readonly struct LineRead
{
    /// <summary><see cref="LineStatus.Line"/>, <see cref="LineStatus.TooLong"/>, or <see cref="LineStatus.End"/> when the peer closed.</summary>
    public LineStatus Status { get; init; }
    /// <summary>The line without its terminator; valid until the next ReadAsync (a reused buffer).</summary>
    public ReadOnlyMemory<byte> Line { get; init; }
    public LineFlags Flags { get; init; }
    /// <summary>Bytes this read took off the wire: the line with its terminator, plus the rest of an over-long line discarded before it.</summary>
    public int WireLength { get; init; }
}

/// <summary>
/// Reads lines off a pipe (FTP and SMTP commands and replies) with a length bound. A line longer than the bound is
/// reported once as <see cref="LineStatus.TooLong"/> and the rest of it, up to its LF, is discarded by the next
/// read. Memory stays bounded by maxLine whatever the peer sends.
/// </summary>
public sealed class LineReader(PipeReader input, int maxLine)
{
    byte[] _line = [];
    bool _skipping;

    public PipeReader Input => input;

    /// <summary>Every byte taken off the pipe so far.</summary>
    public long TotalConsumed { get; private set; }

    /// <summary>
    /// Unread bytes already in the pipe (received after the last line returned). STARTTLS and AUTH TLS must refuse
    /// or discard these: they were sent in plaintext before the handshake (CVE-2011-0411).
    /// </summary>
    public bool HasBuffered
    {
        get
        {
            if (!input.TryRead(out var r)) return false;
            bool any = !r.Buffer.IsEmpty;
            input.AdvanceTo(r.Buffer.Start);
            return any;
        }
    }

    // Pooled: a read that waits for the network would otherwise allocate its state machine box, once per line.
    [AsyncMethodBuilder(typeof(PooledBuilder<>))]
    public async ValueTask<LineRead> ReadAsync(CancellationToken ct)
    {
        long skipped = 0;
        while (true)
        {
            var result = await input.ReadAsync(ct).ConfigureAwait(false);
            var buffer = result.Buffer;
            if (_skipping)
            {
                bool found = LineFramer.TrySkipLine(buffer, out var skipTo);
                long now = buffer.Slice(0, skipTo).Length;
                skipped += now;
                TotalConsumed += now;
                buffer = buffer.Slice(skipTo);
                _skipping = !found;
            }
            if (!_skipping)
            {
                switch (LineFramer.TryFrame(buffer, maxLine, out var consumed, out var line, out var flags))
                {
                    case LineStatus.Line:
                        int n = (int)line.Length;
                        if (_line.Length < n) _line = new byte[Math.Max(n, Math.Min(maxLine, 512))];
                        line.CopyTo(_line);
                        int wire = (int)buffer.Slice(0, consumed).Length;
                        return Take(consumed, new LineRead { Status = LineStatus.Line, Line = _line.AsMemory(0, n), Flags = flags, WireLength = wire + (int)skipped }, skipped);
                    case LineStatus.TooLong:
                        // Report it now (the protocol answers), and drop what is here of it; the rest goes on the next read.
                        _skipping = !LineFramer.TrySkipLine(buffer, out var to);
                        return Take(to, new LineRead { Status = LineStatus.TooLong, WireLength = (int)(buffer.Slice(0, to).Length + skipped) }, skipped);
                }
            }
            if (result.IsCompleted)
            {
                // A last line without LF is not a command.
                long rest = buffer.Length;
                return Take(buffer.End, new LineRead { Status = LineStatus.End, WireLength = (int)(rest + skipped) }, skipped);
            }
            // Incomplete: keep it (a discarded part is already behind buffer.Start).
            input.AdvanceTo(buffer.Start, buffer.End);
        }
    }

    LineRead Take(SequencePosition to, LineRead read, long alreadyCounted)
    {
        input.AdvanceTo(to);
        TotalConsumed += read.WireLength - alreadyCounted;
        return read;
    }
}
