using System.Buffers;
using System.Runtime.Intrinsics;

namespace Bastion.Protocols.Smtp;

public enum DataStatus : byte { NeedMore, End }

/// <summary>
/// The DATA stream (RFC 5321 4.1.1.4, 4.5.2), sans-I/O. Bytes are relayed as received, still dot-stuffed; the
/// end of data is CRLF "." CRLF and nothing else: `\n.\n`, `\r.\n`, `\n.\r\n`, `\r\n.\n`, `\r\n.\r`... are not
/// ends (SMTP smuggling). A bare CR or LF either refuses the message (<see cref="Refusal"/>; output stops, the
/// scan goes on to the real end so that no byte of it is read as a command) or is written as CRLF — and a line
/// that is then a lone "." is written "..", so the server cannot see an end the gateway did not see.
/// The terminating ".\r\n" is never written: the session sends it once the message is allowed.
/// Ordinary text (every CR followed by LF, every LF after a CR, no line starting with ".") is passed over a vector at
/// a time (<see cref="PlainLength"/>); the byte-wise state machine sees only the blocks that hold something else.
/// </summary>
public sealed class DataScanner(BareNewlineMode mode, long maxSize) : MessageFilter(mode, maxSize)
{
    enum State : byte { LineStart, Mid, Cr, Dot, DotCr }

    State _state;
    // The current line start came after a normalised bare newline: a "." line there is not an end.
    bool _soft;
    long _consumed;
    int _stuffing;

    /// <summary>Octets of the message so far (excluding the terminator and stuffing dots).</summary>
    public override long Size => Math.Max(0, _consumed - _stuffing);

    public void Reset()
    {
        _state = State.LineStart;
        _soft = false;
        _consumed = 0;
        _stuffing = 0;
        ResetCheck();
    }

    static ReadOnlySpan<byte> StuffedDotLine => "..\r\n"u8;

    /// <summary>
    /// Scans <paramref name="input"/>, writing what may be relayed to <paramref name="output"/>. Returns
    /// <see cref="DataStatus.End"/> when the terminator was read; <paramref name="consumed"/> then counts it,
    /// and what follows in the input is the next command.
    /// </summary>
    public DataStatus Feed(ReadOnlySpan<byte> input, IBufferWriter<byte> output, out int consumed)
    {
        int i = 0, run = 0, n = input.Length, slowUntil = 0;
        while (i < n)
        {
            // Between lines or inside one (not after a normalised newline), whole blocks of plain text are skipped
            // at once; a block that is not plain goes to the state machine before the next try.
            if (i >= slowUntil && (_state == State.Mid || (_state == State.LineStart && !_soft)))
            {
                int plain = PlainLength(input[i..], _state == State.LineStart);
                if (plain > 0)
                {
                    i += plain;
                    _state = input[i - 1] switch { (byte)'\r' => State.Cr, (byte)'\n' => State.LineStart, _ => State.Mid };
                    _soft = false;
                }
                slowUntil = i + Vector256<byte>.Count;
                if (i >= n) break;
            }
            byte b = input[i];
            switch (_state)
            {
                case State.Mid:
                    {
                        int j = input[i..].IndexOfAny((byte)'\r', (byte)'\n');
                        if (j < 0) { i = n; continue; }
                        i += j;
                        if (input[i] == '\r') _state = State.Cr;
                        else { BareNewline(input, output, ref run, i, "bare LF"); _state = Normalizing ? State.LineStart : State.Mid; }
                        i++;
                        continue;
                    }
                case State.LineStart:
                    if (b == '.')
                    {
                        Write(output, input[run..i]);
                        run = i + 1; // the dot is held until its line is known
                        _state = State.Dot;
                    }
                    else if (b == '\r') { _state = State.Cr; _soft = false; }
                    else if (b == '\n') { BareNewline(input, output, ref run, i, "bare LF"); _state = Normalizing ? State.LineStart : State.Mid; }
                    else { _state = State.Mid; _soft = false; }
                    i++;
                    continue;
                case State.Cr:
                    if (b == '\n')
                    {
                        _state = State.LineStart;
                        _soft = false;
                        i++;
                        continue;
                    }
                    // The CR before this byte was bare; this byte is read again in the new state.
                    if (Normalizing)
                    {
                        Write(output, input[run..i]);
                        Write(output, Lf);
                        run = i;
                        Normalized++;
                        _state = State.LineStart;
                        _soft = true;
                    }
                    else
                    {
                        Refuse("bare CR in message data");
                        _state = State.Mid;
                    }
                    continue;
                case State.Dot:
                    if (b == '\r')
                    {
                        run = i + 1;
                        _state = State.DotCr;
                        i++;
                        continue;
                    }
                    if (b == '\n')
                    {
                        // "." ended by a bare LF.
                        DotLineBare(output, "bare LF after a dot");
                        run = i + 1;
                        i++;
                        continue;
                    }
                    // A dot-stuffed or ordinary line starting with '.': relayed as received.
                    Write(output, Dot);
                    if (b == '.') _stuffing++;
                    run = i;
                    _state = State.Mid;
                    _soft = false;
                    continue;
                case State.DotCr:
                    if (b == '\n')
                    {
                        if (!_soft)
                        {
                            i++;
                            consumed = i;
                            _consumed += i;
                            _consumed -= 3;
                            _state = State.LineStart;
                            CheckSize();
                            return DataStatus.End;
                        }
                        // A "." line after a normalised newline: the server must not read it as the end.
                        Write(output, StuffedDotLine);
                        run = i + 1;
                        _state = State.LineStart;
                        _soft = false;
                        i++;
                        continue;
                    }
                    // ".\r" then something else: the CR is bare.
                    DotLineBare(output, "bare CR after a dot");
                    run = i;
                    continue;
            }
        }
        // Everything read so far that is not held back (a line-start dot, or dot and CR: never in the run) can go.
        if (run < n) Write(output, input[run..n]);
        consumed = n;
        _consumed += n;
        CheckSize();
        return DataStatus.NeedMore;
    }

    /// <summary>
    /// How many bytes from the start of <paramref name="s"/> are plain text, in whole vectors: each CR followed by LF
    /// (a CR last in the length is left to the state machine with the byte after it), each LF after a CR, no "." right
    /// after a LF. <paramref name="afterLf"/>: the byte before <paramref name="s"/> was the LF of a CRLF.
    /// </summary>
    static int PlainLength(ReadOnlySpan<byte> s, bool afterLf)
    {
        ref byte start = ref System.Runtime.InteropServices.MemoryMarshal.GetReference(s);
        int i = 0;
        uint lfCarry = afterLf ? 1u : 0u, crCarry = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var cr = Vector256.Create((byte)'\r');
            var lf = Vector256.Create((byte)'\n');
            var dot = Vector256.Create((byte)'.');
            for (; i <= s.Length - Vector256<byte>.Count; i += Vector256<byte>.Count)
            {
                var v = Vector256.LoadUnsafe(ref start, (nuint)i);
                uint crs = Vector256.Equals(v, cr).ExtractMostSignificantBits();
                uint lfs = Vector256.Equals(v, lf).ExtractMostSignificantBits();
                uint dots = Vector256.Equals(v, dot).ExtractMostSignificantBits();
                if ((lfs ^ ((crs << 1) | crCarry)) != 0 || (dots & ((lfs << 1) | lfCarry)) != 0) break;
                crCarry = crs >> 31;
                lfCarry = lfs >> 31;
            }
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var cr = Vector128.Create((byte)'\r');
            var lf = Vector128.Create((byte)'\n');
            var dot = Vector128.Create((byte)'.');
            for (; i <= s.Length - Vector128<byte>.Count; i += Vector128<byte>.Count)
            {
                var v = Vector128.LoadUnsafe(ref start, (nuint)i);
                uint crs = Vector128.Equals(v, cr).ExtractMostSignificantBits();
                uint lfs = Vector128.Equals(v, lf).ExtractMostSignificantBits();
                uint dots = Vector128.Equals(v, dot).ExtractMostSignificantBits();
                if ((lfs ^ (((crs << 1) | crCarry) & 0xFFFF)) != 0 || (dots & ((lfs << 1) | lfCarry)) != 0) break;
                crCarry = crs >> 15;
                lfCarry = lfs >> 15;
            }
        }
        return i;
    }

    /// <summary>A line that is a lone "." ended by a bare CR or LF.</summary>
    void DotLineBare(IBufferWriter<byte> output, string what)
    {
        if (Normalizing)
        {
            Write(output, StuffedDotLine);
            Normalized++;
            _state = State.LineStart;
            _soft = true;
        }
        else
        {
            Refuse(what + " in message data");
            _state = State.Mid;
        }
    }

    void BareNewline(ReadOnlySpan<byte> input, IBufferWriter<byte> output, ref int run, int i, string what)
    {
        if (Normalizing)
        {
            Write(output, input[run..i]);
            Write(output, CrLf);
            run = i + 1;
            Normalized++;
            _soft = true;
        }
        else Refuse(what + " in message data");
    }

}
