using System.Text;

namespace Bastion.Protocols.Smtp;

/// <summary>A server reply: its code and the text of each line (after "ddd-" / "ddd ").</summary>
public sealed class SmtpReply(int code, List<string> lines)
{
    public int Code { get; } = code;
    public IReadOnlyList<string> Lines { get; } = lines;

    public bool IsPositive => Code is >= 200 and < 400;
    public bool IsTransient => Code is >= 400 and < 500;

    /// <summary>The first line's text, for logs.</summary>
    public string Text => Lines.Count > 0 ? Lines[0] : "";

    public override string ToString() => $"{Code} {Text}";

    /// <summary>Writes the reply as it goes on the wire (what <see cref="Wire"/> returns) into <paramref name="output"/>; returns the octets written.</summary>
    public int WriteTo(System.Buffers.IBufferWriter<byte> output)
    {
        int total = 0;
        int last = Math.Max(Lines.Count, 1) - 1;
        for (int i = 0; i <= last; i++)
        {
            var text = Lines.Count == 0 ? "" : Lines[i];
            var span = output.GetSpan(Encoding.UTF8.GetMaxByteCount(text.Length) + 6);
            span[0] = (byte)('0' + Code / 100);
            span[1] = (byte)('0' + Code / 10 % 10);
            span[2] = (byte)('0' + Code % 10);
            int n = 3;
            if (Lines.Count > 0)
            {
                span[3] = i == last ? (byte)' ' : (byte)'-';
                n = 4 + Encoding.UTF8.GetBytes(text, span[4..]);
            }
            span[n] = (byte)'\r';
            span[n + 1] = (byte)'\n';
            output.Advance(n + 2);
            total += n + 2;
        }
        return total;
    }

    /// <summary>The reply as it goes on the wire (multi-line with '-' continuations).</summary>
    public string Wire()
    {
        var sb = new StringBuilder();
        for (int i = 0; i < Lines.Count; i++)
            sb.Append(Code).Append(i == Lines.Count - 1 ? ' ' : '-').Append(Lines[i]).Append("\r\n");
        if (Lines.Count == 0) sb.Append(Code).Append("\r\n");
        return sb.ToString();
    }
}

public enum ReplyStatus : byte { NeedMore, Complete, Malformed }

/// <summary>
/// Collects a reply line by line (RFC 5321 4.2), strictly: three digits (2xx-5xx), then '-' (more lines follow),
/// ' ' or the end of the line; every line of one reply has the same code; printable text only; at most
/// <see cref="MaxLines"/> lines. Anything else is garbage from the server: the session answers 421 and closes.
/// </summary>
public sealed class ReplyAccumulator
{
    public const int MaxLines = 100;
    int _code = -1;
    readonly List<string> _lines = [];

    public void Reset()
    {
        _code = -1;
        _lines.Clear();
    }

    public ReplyStatus Add(ReadOnlySpan<byte> line, out SmtpReply? reply, out string error)
    {
        reply = null;
        error = "";
        if (line.Length < 3 || !IsDigit(line[0]) || !IsDigit(line[1]) || !IsDigit(line[2]))
            return Malformed("a reply line does not start with three digits", out error);
        int code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
        if (code is < 200 or > 599 || line[1] > '5') return Malformed($"reply code {code} is out of range", out error);
        if (_code >= 0 && code != _code) return Malformed($"reply code {code} inside a {_code} reply", out error);
        bool more;
        if (line.Length == 3) more = false;
        else if (line[3] == ' ') more = false;
        else if (line[3] == '-') more = true;
        else return Malformed("no ' ' or '-' after the reply code", out error);
        var text = line.Length > 4 ? line[4..] : [];
        foreach (var b in text)
            if (b < 32 && b != '\t' || b == 127) return Malformed("a control character in a reply", out error);
        if (_lines.Count >= MaxLines) return Malformed($"a reply of more than {MaxLines} lines", out error);
        _code = code;
        _lines.Add(Encoding.UTF8.GetString(text));
        if (more) return ReplyStatus.NeedMore;
        reply = new SmtpReply(code, [.. _lines]);
        Reset();
        return ReplyStatus.Complete;
    }

    ReplyStatus Malformed(string why, out string error)
    {
        error = why;
        Reset();
        return ReplyStatus.Malformed;
    }

    static bool IsDigit(byte b) => b is >= (byte)'0' and <= (byte)'9';
}
