namespace Bastion.Protocols.Http.Codec;

/// <summary>
/// The strict, sans-I/O HTTP/1.x response head parser, for what upstream servers send. Status line
/// `HTTP/1.x SP 3DIGIT [SP reason] CRLF` (status 100–599, reason of HTAB/SP/VCHAR/obs-text), the same field rules
/// as requests (<see cref="FieldScanner"/>), then framing by RFC 9112 §6.3 for the request it answers. Every error
/// is a 502: the gateway must not relay a response whose end it cannot be sure of.
/// </summary>
public static class ResponseParser
{
    public static ParseResult TryParse(ReadOnlySpan<byte> input, ResponseHead head, int maxHeadSize, bool headRequest,
        bool connectRequest, out int consumed, out HttpError error, int maxFields = RequestParser.DefaultMaxFields)
    {
        consumed = 0;
        head.Reset();
        // Empty lines before a status line are skipped, as before a request line (RFC 9112 §2.2).
        int skip = 0;
        while (skip + 1 < input.Length && input[skip] == (byte)'\r' && input[skip + 1] == (byte)'\n' && skip < 64) skip += 2;
        input = input[skip..];
        int lf = input.IndexOf((byte)'\n');
        ParseResult r;
        int end = 0;
        if (lf < 0)
            r = CheckPartialStatusLine(input, out error) ? ParseResult.NeedMore : ParseResult.Invalid;
        else if (lf == 0 || input[lf - 1] != (byte)'\r')
        {
            error = HttpError.BadResponse("bare LF in the response head");
            r = ParseResult.Invalid;
        }
        else if (!ParseStatusLine(input[..(lf - 1)], head, out error)) r = ParseResult.Invalid;
        else
        {
            head.FieldsStart = lf + 1;
            r = FieldScanner.Scan(input, lf + 1, head, maxFields, 502, out end, out error);
        }
        if ((r == ParseResult.NeedMore && input.Length > maxHeadSize) || (r == ParseResult.Complete && end > maxHeadSize))
        {
            error = HttpError.BadResponse("response head too large");
            return ParseResult.Invalid;
        }
        if (r != ParseResult.Complete) return r;
        head.SetBytes(input[..end]);
        head.WireLength = skip + end;
        if (!FramingRules.ForResponse(head, head.Status, headRequest, connectRequest, out var framing, out error)) return ParseResult.Invalid;
        head.Framing = framing;
        if (!FramingRules.Connection(head, 502, out error)) return ParseResult.Invalid;
        // A close-delimited body ends the connection.
        if (framing.Kind == BodyKind.UntilClose) head.Close = true;
        consumed = skip + end;
        return ParseResult.Complete;
    }

    static bool ParseStatusLine(ReadOnlySpan<byte> line, ResponseHead head, out HttpError error)
    {
        error = HttpError.BadResponse("invalid status line");
        if (line.Length < 12 || !line.StartsWith("HTTP/1."u8) || line[8] != (byte)' ') return false;
        int minor = line[7] switch { (byte)'1' => 1, (byte)'0' => 0, _ => -1 };
        if (minor < 0) return false;
        if (!HttpChars.IsDigit(line[9]) || !HttpChars.IsDigit(line[10]) || !HttpChars.IsDigit(line[11])) return false;
        int status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
        if (status is < 100 or > 599) return false;
        int reasonStart = line.Length, reasonEnd = line.Length;
        if (line.Length > 12)
        {
            if (line[12] != (byte)' ') return false;
            reasonStart = 13;
            if (line[13..].IndexOfAny(HttpChars.NotFieldValue) >= 0) return false;
        }
        head.SetStatusLine(minor, status, reasonStart, reasonEnd);
        error = default;
        return true;
    }

    static bool CheckPartialStatusLine(ReadOnlySpan<byte> s, out HttpError error)
    {
        error = HttpError.BadResponse("invalid status line");
        if (s.Length == 1 && s[0] == (byte)'\r') return true;
        if (!s.IsEmpty && s[^1] == (byte)'\r') s = s[..^1];
        ReadOnlySpan<byte> shape = "HTTP/1.0 000 "u8;
        for (int k = 0; k < s.Length && k < shape.Length; k++)
        {
            bool ok = k == 7 ? s[k] is (byte)'0' or (byte)'1' : shape[k] == (byte)'0' && k > 8 ? HttpChars.IsDigit(s[k]) : s[k] == shape[k];
            if (!ok) return false;
        }
        return s.Length <= shape.Length || s[shape.Length..].IndexOfAny(HttpChars.NotFieldValue) < 0;
    }
}
