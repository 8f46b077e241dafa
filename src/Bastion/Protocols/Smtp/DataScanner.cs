using System.Buffers;

namespace Bastion.Protocols.Smtp;

/// <summary>What to do with a bare CR or bare LF inside message data (postfix's smtpd_forbid_bare_newline).</summary>
public enum BareNewlineMode : byte { Refuse, Normalize }

public enum DataStatus : byte { NeedMore, End }

/// <summary>
/// The DATA stream (RFC 5321 4.1.1.4, 4.5.2), sans-I/O. Bytes are relayed as received, still dot-stuffed; the
/// end of data is CRLF "." CRLF and nothing else: `\n.\n`, `\r.\n`, `\n.\r\n`, `\r\n.\n`, `\r\n.\r`... are not
/// ends (SMTP smuggling). A bare CR or LF either refuses the message (<see cref="Refusal"/>; output stops, the
/// scan goes on to the real end so that no byte of it is read as a command) or is written as CRLF — and a line
/// that is then a lone "." is written "..", so the server cannot see an end the gateway did not see.
/// The terminating ".\r\n" is never written: the session sends it once the message is allowed.
/// </summary>
public sealed class DataScanner(BareNewlineMode mode, long maxSize)
{
    enum State : byte { LineStart, Mid, Cr, Dot, DotCr }

    State _state;
    // The current line start came after a normalised bare newline: a "." line there is not an end.
    bool _soft;
    long _consumed;
    int _stuffing;

    /// <summary>Octets of the message so far (excluding the terminator and stuffing dots).</summary>
    public long Size => Math.Max(0, _consumed - _stuffing);

    /// <summary>Why the message is refused (bare newline: 554, size: 552); once set, nothing more is written.</summary>
    public string? Refusal { get; private set; }
    public int RefusalCode { get; private set; }
    public string RefusalEnhanced { get; private set; } = "";

    /// <summary>Lines whose bare CR/LF were rewritten (normalize mode), for the log.</summary>
    public int Normalized { get; private set; }

    public void Reset()
    {
        _state = State.LineStart;
        _soft = false;
        _consumed = 0;
        _stuffing = 0;
        Refusal = null;
        RefusalCode = 0;
        RefusalEnhanced = "";
        Normalized = 0;
    }

    static ReadOnlySpan<byte> StuffedDotLine => "..\r\n"u8;
    static ReadOnlySpan<byte> Dot => "."u8;
    static ReadOnlySpan<byte> Lf => "\n"u8;
    static ReadOnlySpan<byte> CrLf => "\r\n"u8;

    /// <summary>
    /// Scans <paramref name="input"/>, writing what may be relayed to <paramref name="output"/>. Returns
    /// <see cref="DataStatus.End"/> when the terminator was read; <paramref name="consumed"/> then counts it,
    /// and what follows in the input is the next command.
    /// </summary>
    public DataStatus Feed(ReadOnlySpan<byte> input, IBufferWriter<byte> output, out int consumed)
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
                        else { BareNewline(input, output, ref run, i, "bare LF"); _state = mode == BareNewlineMode.Normalize ? State.LineStart : State.Mid; }
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
                    else if (b == '\n') { BareNewline(input, output, ref run, i, "bare LF"); _state = mode == BareNewlineMode.Normalize ? State.LineStart : State.Mid; }
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
                    if (mode == BareNewlineMode.Normalize)
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

    /// <summary>A line that is a lone "." ended by a bare CR or LF.</summary>
    void DotLineBare(IBufferWriter<byte> output, string what)
    {
        if (mode == BareNewlineMode.Normalize)
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
        if (mode == BareNewlineMode.Normalize)
        {
            Write(output, input[run..i]);
            Write(output, CrLf);
            run = i + 1;
            Normalized++;
            _soft = true;
        }
        else Refuse(what + " in message data");
    }

    void CheckSize()
    {
        if (Refusal is null && Size > maxSize)
        {
            Refusal = $"message exceeds the maximum size of {maxSize} octets";
            RefusalCode = 552;
            RefusalEnhanced = "5.3.4";
        }
    }

    void Refuse(string why)
    {
        if (Refusal is not null) return;
        Refusal = why;
        RefusalCode = 554;
        RefusalEnhanced = "5.6.0";
    }

    void Write(IBufferWriter<byte> output, ReadOnlySpan<byte> bytes)
    {
        if (Refusal is not null || bytes.IsEmpty) return;
        output.Write(bytes);
    }
}
