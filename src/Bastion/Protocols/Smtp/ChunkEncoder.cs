using System.Buffers;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// BDAT chunks (RFC 3030) turned into a DATA stream for the server, sans-I/O. Chunk content is raw (no dot-stuffing,
/// no end marker), so each line that starts with "." gets a second one, and the message is closed with CRLF if the
/// client's last chunk did not end a line. Bare CR and bare LF follow the same rule as in DATA (<see
/// cref="DataScanner"/>): refused (554 5.6.0) or written as CRLF, so the server can never see an end of data the
/// client did not send. The size (the sum of the chunks, RFC 3030 4.2) is checked as the bytes arrive. The
/// terminating ".\r\n" is never written here: the session sends it once the message is allowed.
/// </summary>
public sealed class ChunkEncoder(BareNewlineMode mode, long maxSize) : MessageFilter(mode, maxSize)
{
    enum State : byte { LineStart, Mid, Cr }

    State _state;
    long _size;

    /// <summary>Octets of the message so far, as the client sent them (the sum of the chunks).</summary>
    public override long Size => _size;

    public void Reset()
    {
        _state = State.LineStart;
        _size = 0;
        ResetCheck();
    }

    /// <summary>Encodes all of <paramref name="input"/> (a piece of a chunk) into <paramref name="output"/>.</summary>
    public void Feed(ReadOnlySpan<byte> input, IBufferWriter<byte> output)
    {
        int i = 0, run = 0, n = input.Length;
        while (i < n)
        {
            byte b = input[i];
            switch (_state)
            {
                case State.Mid:
                    {
                        int j = input[i..].IndexOfAny((byte)'\r', (byte)'\n');
                        if (j < 0) { i = n; continue; }
                        i += j;
                        if (input[i] == '\r') _state = State.Cr;
                        else BareLf(input, output, ref run, i);
                        i++;
                        continue;
                    }
                case State.LineStart:
                    if (b == '.')
                    {
                        // Dot-stuffing: the extra dot, then this one with the rest of the run.
                        Write(output, input[run..i]);
                        Write(output, Dot);
                        run = i;
                        _state = State.Mid;
                    }
                    else if (b == '\r') _state = State.Cr;
                    else if (b == '\n') BareLf(input, output, ref run, i);
                    else _state = State.Mid;
                    i++;
                    continue;
                case State.Cr:
                    if (b == '\n')
                    {
                        _state = State.LineStart;
                        i++;
                        continue;
                    }
                    // The CR before this byte was bare (perhaps at the end of the previous chunk); this byte is read again.
                    BareCr(input, output, ref run, i);
                    continue;
            }
        }
        if (run < n) Write(output, input[run..n]);
        _size += n;
        CheckSize();
    }

    /// <summary>After the LAST chunk: a trailing bare CR is judged, and an unfinished last line gets its CRLF.</summary>
    public void Finish(IBufferWriter<byte> output)
    {
        int run = 0;
        if (_state == State.Cr) BareCr([], output, ref run, 0);
        if (_state == State.Mid) Write(output, CrLf);
        _state = State.LineStart;
    }

    void BareLf(ReadOnlySpan<byte> input, IBufferWriter<byte> output, ref int run, int i)
    {
        if (Normalizing)
        {
            Write(output, input[run..i]);
            Write(output, CrLf);
            run = i + 1;
            Normalized++;
            _state = State.LineStart;
        }
        else
        {
            Refuse("bare LF in message data");
            _state = State.Mid;
        }
    }

    void BareCr(ReadOnlySpan<byte> input, IBufferWriter<byte> output, ref int run, int i)
    {
        if (Normalizing)
        {
            // The CR is already in the run (or was written with the previous piece): add its LF.
            Write(output, input[run..i]);
            Write(output, Lf);
            run = i;
            Normalized++;
            _state = State.LineStart;
        }
        else
        {
            Refuse("bare CR in message data");
            _state = State.Mid;
        }
    }

}
