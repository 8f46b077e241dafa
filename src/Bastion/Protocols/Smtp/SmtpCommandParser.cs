using System.Text;

namespace Bastion.Protocols.Smtp;

/// <summary>
/// What the session has advertised, and so what a command may use: parameters of an extension that was not
/// offered are refused like unknown ones (RFC 5321 4.1.1.11, RFC 1870, 6152, 6531).
/// </summary>
public readonly record struct CommandOptions(bool Size, bool EightBitMime, bool SmtpUtf8, bool Chunking, bool AllowHacks);

/// <summary>
/// RFC 5321 command lines (without their CRLF), strictly: a known verb, one space before arguments, paths in
/// angle brackets (a space after the colon is tolerated, as most servers do), parameters only of advertised
/// extensions. Sans-I/O and exception-free: each line is parsed or refused with the reply code to send.
/// </summary>
public static class SmtpCommandParser
{
    public static CommandError Parse(ReadOnlySpan<byte> line, CommandOptions opt, SmtpCommand cmd)
    {
        cmd.Reset();
        int sp = line.IndexOf((byte)' ');
        var verb = sp < 0 ? line : line[..sp];
        var rest = sp < 0 ? [] : line[(sp + 1)..];
        cmd.Verb = Verb(verb);
        switch (cmd.Verb)
        {
            case SmtpVerb.Unknown:
                return new(500, "5.5.1", "command unrecognized");
            case SmtpVerb.Helo or SmtpVerb.Ehlo:
                {
                    if (sp < 0 || rest.Length == 0) return Syntax($"{SmtpCommand.Name(cmd.Verb)} needs a domain");
                    // Some clients add text after the domain; RFC 5321 does not, and neither do we.
                    var name = MailPathParser.ParseDomain(rest, false, out var why);
                    if (name is null) return Syntax($"{SmtpCommand.Name(cmd.Verb)}: {why}");
                    cmd.Argument = name;
                    return CommandError.None;
                }
            case SmtpVerb.Mail:
                return ParseMail(sp < 0 ? [] : line[(sp + 1)..], opt, cmd);
            case SmtpVerb.Rcpt:
                return ParseRcpt(sp < 0 ? [] : line[(sp + 1)..], opt, cmd);
            case SmtpVerb.Data or SmtpVerb.Rset or SmtpVerb.Quit or SmtpVerb.StartTls:
                if (sp >= 0) return Syntax($"{SmtpCommand.Name(cmd.Verb)} takes no argument");
                return CommandError.None;
            case SmtpVerb.Noop or SmtpVerb.Help:
                if (sp >= 0 && !IsPrintable(rest)) return Syntax("a non-printable argument");
                cmd.Argument = sp < 0 ? null : Encoding.ASCII.GetString(rest);
                return CommandError.None;
            case SmtpVerb.Vrfy or SmtpVerb.Expn:
                if (sp < 0 || rest.Length == 0 || !IsPrintable(rest)) return Syntax($"{SmtpCommand.Name(cmd.Verb)} needs an argument");
                cmd.Argument = Encoding.ASCII.GetString(rest);
                return CommandError.None;
            case SmtpVerb.Auth:
                if (sp < 0 || rest.Length == 0 || !IsPrintable(rest)) return Syntax("AUTH needs a mechanism");
                cmd.Argument = Encoding.ASCII.GetString(rest);
                return CommandError.None;
            case SmtpVerb.Bdat:
                return ParseBdat(rest, sp >= 0, opt, cmd);
        }
        return new(500, "5.5.1", "command unrecognized");
    }

    static CommandError ParseMail(ReadOnlySpan<byte> arg, CommandOptions opt, SmtpCommand cmd)
    {
        if (!StartsWithIgnoreCase(arg, "from:"u8)) return Syntax("expected MAIL FROM:<address>");
        arg = SkipSpaces(arg[5..]);
        // SMTPUTF8 must be known before the address is judged: look ahead at the parameters.
        bool utf8 = opt.SmtpUtf8 && HasParam(arg, "SMTPUTF8"u8);
        var e = MailPathParser.Parse(arg, true, new(opt.AllowHacks, utf8), out var path, out var used, out var reason);
        if (e != PathError.None) return PathFailure(e, reason, "sender");
        cmd.Path = path;
        var p = arg[used..];
        if (p.Length > 0 && p[0] != ' ') return Syntax("junk after the address");
        foreach (var param in new ParamEnumerator(p))
        {
            var key = param.Key;
            var value = param.Value;
            if (key.IsEmpty) return Syntax("a malformed parameter");
            if (opt.Size && AsciiEqualsIgnoreCase(key, "SIZE"u8))
            {
                if (!TryDigits(value, out var size)) return Syntax("SIZE= needs a number");
                cmd.DeclaredSize = size;
            }
            else if (opt.EightBitMime && AsciiEqualsIgnoreCase(key, "BODY"u8))
            {
                if (AsciiEqualsIgnoreCase(value, "7BIT"u8)) cmd.Body = MailBody.SevenBit;
                else if (AsciiEqualsIgnoreCase(value, "8BITMIME"u8)) cmd.Body = MailBody.EightBitMime;
                else return new(555, "5.5.4", "BODY= must be 7BIT or 8BITMIME");
            }
            else if (opt.SmtpUtf8 && AsciiEqualsIgnoreCase(key, "SMTPUTF8"u8) && value.IsEmpty)
                cmd.SmtpUtf8 = true;
            else return new(555, "5.5.4", $"MAIL parameter {Printable(key)} not recognized");
        }
        return CommandError.None;
    }

    static CommandError ParseRcpt(ReadOnlySpan<byte> arg, CommandOptions opt, SmtpCommand cmd)
    {
        if (!StartsWithIgnoreCase(arg, "to:"u8)) return Syntax("expected RCPT TO:<address>");
        arg = SkipSpaces(arg[3..]);
        var e = MailPathParser.Parse(arg, false, new(opt.AllowHacks, opt.SmtpUtf8), out var path, out var used, out var reason);
        if (e != PathError.None) return PathFailure(e, reason, "recipient");
        cmd.Path = path;
        var p = arg[used..];
        if (p.Length > 0 && p[0] != ' ') return Syntax("junk after the address");
        foreach (var param in new ParamEnumerator(p))
            return param.Key.IsEmpty ? Syntax("a malformed parameter") : new(555, "5.5.4", $"RCPT parameter {Printable(param.Key)} not recognized");
        return CommandError.None;
    }

    static CommandError ParseBdat(ReadOnlySpan<byte> rest, bool hasArg, CommandOptions opt, SmtpCommand cmd)
    {
        if (!opt.Chunking) return new(500, "5.5.1", "command unrecognized");
        if (!hasArg) return Syntax("BDAT needs a size");
        int sp = rest.IndexOf((byte)' ');
        var num = sp < 0 ? rest : rest[..sp];
        if (!TryDigits(num, out var size)) return Syntax("BDAT needs a size");
        cmd.ChunkSize = size;
        if (sp >= 0)
        {
            if (!AsciiEqualsIgnoreCase(rest[(sp + 1)..], "LAST"u8)) return Syntax("BDAT size [LAST]");
            cmd.Last = true;
        }
        return CommandError.None;
    }

    static CommandError PathFailure(PathError e, string reason, string what) => e switch
    {
        PathError.AddressHack or PathError.SourceRoute => new(553, "5.1.3", $"{what} address not accepted: {reason}"),
        PathError.NonAscii => new(553, "5.6.7", $"{what} address not accepted: {reason}"),
        PathError.TooLong => new(501, "5.1.3", $"{what} address too long: {reason}"),
        _ => new(501, "5.1.3", $"bad {what} address syntax: {reason}"),
    };

    static CommandError Syntax(string reason) => new(501, "5.5.4", reason);

    static SmtpVerb Verb(ReadOnlySpan<byte> v) => v.Length switch
    {
        4 when AsciiEqualsIgnoreCase(v, "HELO"u8) => SmtpVerb.Helo,
        4 when AsciiEqualsIgnoreCase(v, "EHLO"u8) => SmtpVerb.Ehlo,
        4 when AsciiEqualsIgnoreCase(v, "MAIL"u8) => SmtpVerb.Mail,
        4 when AsciiEqualsIgnoreCase(v, "RCPT"u8) => SmtpVerb.Rcpt,
        4 when AsciiEqualsIgnoreCase(v, "DATA"u8) => SmtpVerb.Data,
        4 when AsciiEqualsIgnoreCase(v, "BDAT"u8) => SmtpVerb.Bdat,
        4 when AsciiEqualsIgnoreCase(v, "RSET"u8) => SmtpVerb.Rset,
        4 when AsciiEqualsIgnoreCase(v, "NOOP"u8) => SmtpVerb.Noop,
        4 when AsciiEqualsIgnoreCase(v, "QUIT"u8) => SmtpVerb.Quit,
        4 when AsciiEqualsIgnoreCase(v, "VRFY"u8) => SmtpVerb.Vrfy,
        4 when AsciiEqualsIgnoreCase(v, "EXPN"u8) => SmtpVerb.Expn,
        4 when AsciiEqualsIgnoreCase(v, "HELP"u8) => SmtpVerb.Help,
        4 when AsciiEqualsIgnoreCase(v, "AUTH"u8) => SmtpVerb.Auth,
        8 when AsciiEqualsIgnoreCase(v, "STARTTLS"u8) => SmtpVerb.StartTls,
        _ => SmtpVerb.Unknown,
    };

    public static bool AsciiEqualsIgnoreCase(ReadOnlySpan<byte> a, ReadOnlySpan<byte> upper)
    {
        if (a.Length != upper.Length) return false;
        for (int i = 0; i < a.Length; i++)
        {
            byte x = a[i];
            if (x is >= (byte)'a' and <= (byte)'z') x -= 32;
            if (x != upper[i]) return false;
        }
        return true;
    }

    static bool StartsWithIgnoreCase(ReadOnlySpan<byte> s, ReadOnlySpan<byte> lowerPrefix)
    {
        if (s.Length < lowerPrefix.Length) return false;
        for (int i = 0; i < lowerPrefix.Length; i++)
        {
            byte b = s[i];
            if (b is >= (byte)'A' and <= (byte)'Z') b += 32;
            if (b != lowerPrefix[i]) return false;
        }
        return true;
    }

    static ReadOnlySpan<byte> SkipSpaces(ReadOnlySpan<byte> s)
    {
        // One space after the colon is common (Outlook, many scripts); more is not.
        return s.Length > 0 && s[0] == ' ' ? s[1..] : s;
    }

    static bool HasParam(ReadOnlySpan<byte> arg, ReadOnlySpan<byte> upperName)
    {
        int close = arg.IndexOf((byte)'>');
        if (close < 0) return false;
        foreach (var param in new ParamEnumerator(arg[(close + 1)..]))
            if (AsciiEqualsIgnoreCase(param.Key, upperName)) return true;
        return false;
    }

    static bool TryDigits(ReadOnlySpan<byte> s, out long v)
    {
        v = 0;
        if (s.Length is 0 or > 18) return false;
        foreach (var b in s)
        {
            if (b is < (byte)'0' or > (byte)'9') return false;
            v = v * 10 + (b - '0');
        }
        return true;
    }

    static bool IsPrintable(ReadOnlySpan<byte> s)
    {
        foreach (var b in s) if (b is < 32 or > 126) return false;
        return true;
    }

    static string Printable(ReadOnlySpan<byte> s) =>
        IsPrintable(s) && s.Length <= 40 ? Encoding.ASCII.GetString(s) : "(unprintable)";

    /// <summary>
    /// esmtp-param *(SP esmtp-param), esmtp-param = keyword ["=" value]: keyword (ALPHA/DIGIT) *(ALPHA/DIGIT/"-"),
    /// value 1*(%d33-60 / %d62-126). A malformed parameter comes back with an empty key.
    /// </summary>
    readonly ref struct EsmtpParam(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        public ReadOnlySpan<byte> Key { get; } = key;
        public ReadOnlySpan<byte> Value { get; } = value;
    }

    ref struct ParamEnumerator(ReadOnlySpan<byte> s)
    {
        ReadOnlySpan<byte> _rest = s;

        public EsmtpParam Current { get; private set; }

        public readonly ParamEnumerator GetEnumerator() => this;

        public bool MoveNext()
        {
            if (_rest.IsEmpty) return false;
            if (_rest[0] != ' ' || _rest.Length == 1) { Current = default; _rest = []; return true; }
            _rest = _rest[1..];
            int sp = _rest.IndexOf((byte)' ');
            var p = sp < 0 ? _rest : _rest[..sp];
            _rest = sp < 0 ? [] : _rest[sp..];
            int eq = p.IndexOf((byte)'=');
            var key = eq < 0 ? p : p[..eq];
            var value = eq < 0 ? [] : p[(eq + 1)..];
            if (!ValidKey(key) || (eq >= 0 && !ValidValue(value))) { Current = default; _rest = []; return true; }
            Current = new EsmtpParam(key, value);
            return true;
        }

        static bool ValidKey(ReadOnlySpan<byte> k)
        {
            if (k.IsEmpty || !char.IsAsciiLetterOrDigit((char)k[0])) return false;
            foreach (var b in k) if (!char.IsAsciiLetterOrDigit((char)b) && b != '-') return false;
            return true;
        }

        static bool ValidValue(ReadOnlySpan<byte> v)
        {
            if (v.IsEmpty) return false;
            foreach (var b in v) if (b is < 33 or > 126 or (byte)'=') return false;
            return true;
        }
    }
}
