using System.Net;

namespace Bastion.Protocols.Ftp;

public enum FtpParse : byte
{
    /// <summary>A known command with a well-formed argument.</summary>
    Ok,
    /// <summary>Not a command the gateway knows: 500.</summary>
    Unknown,
    /// <summary>A known command with a bad argument: <see cref="FtpCommandLine.ErrorCode"/> (501, 504, 522).</summary>
    Malformed,
}

/// <summary>
/// One parsed command line. Offsets index the line it was parsed from (after any Telnet prefix), so nothing is
/// copied; values that the session needs as such (a number, an address, a letter) are parsed here once.
/// </summary>
public readonly record struct FtpCommandLine
{
    public FtpCommandSpec? Spec { get; init; }
    /// <summary>Where the verb starts (after Telnet IP/DM bytes some clients send before ABOR).</summary>
    public int VerbStart { get; init; }
    public int ArgStart { get; init; }
    /// <summary>-1 when the command has no argument.</summary>
    public int ArgLength { get; init; }
    public int PathStart { get; init; }
    /// <summary>-1 when no path was given.</summary>
    public int PathLength { get; init; }
    /// <summary>REST offset, PBSZ size.</summary>
    public long Number { get; init; }
    /// <summary>PORT/EPRT target.</summary>
    public IPEndPoint? Address { get; init; }
    /// <summary>TYPE/PROT letter, upper case.</summary>
    public byte Letter { get; init; }
    /// <summary>EPSV: 0 none given, 1 IPv4, 2 IPv6, -1 ALL.</summary>
    public int EpsvProto { get; init; }
    public int ErrorCode { get; init; }
    public string? Error { get; init; }

    public bool HasArg => ArgLength > 0;
    public bool HasPath => PathLength > 0;

    public ReadOnlySpan<byte> Arg(ReadOnlySpan<byte> line) => ArgLength > 0 ? line.Slice(ArgStart, ArgLength) : default;

    public ReadOnlySpan<byte> Path(ReadOnlySpan<byte> line) => PathLength > 0 ? line.Slice(PathStart, PathLength) : default;
}

/// <summary>
/// Sans-I/O parser for one FTP command line (without its CRLF): `VERB[ SP argument]`. The verb is looked up in
/// <see cref="FtpCommands"/>, the argument checked against the verb's syntax. Never throws; bad input is a
/// value (Unknown or Malformed with a reply code and a reason).
/// </summary>
public static class FtpCommandParser
{
    const byte Iac = 255;

    public static FtpParse Parse(ReadOnlySpan<byte> line, out FtpCommandLine cmd)
    {
        int start = SkipTelnet(line);
        var rest = line[start..];
        int sp = rest.IndexOf((byte)' ');
        var verb = sp < 0 ? rest : rest[..sp];
        var spec = FtpCommands.Lookup(verb);
        if (spec is null)
        {
            cmd = new FtpCommandLine { VerbStart = start, ArgLength = -1, PathLength = -1, ErrorCode = 500, Error = "unknown command" };
            return FtpParse.Unknown;
        }
        int argStart = sp < 0 ? line.Length : start + sp + 1;
        int argLength = sp < 0 ? -1 : line.Length - argStart;
        var arg = argLength > 0 ? line.Slice(argStart, argLength) : default;
        if (arg.IndexOfAny((byte)0, (byte)'\r', (byte)'\n') >= 0)
            return Bad(spec, start, 501, "control characters in the argument", out cmd);
        if (argLength == 0) argLength = -1; // "NOOP " is NOOP: a trailing space is not an argument.
        cmd = new FtpCommandLine { Spec = spec, VerbStart = start, ArgStart = argStart, ArgLength = argLength, PathStart = argStart, PathLength = -1 };
        return CheckArg(spec, arg, ref cmd);
    }

    /// <summary>Telnet commands (IAC IP, IAC DM, option negotiation) before the verb, as clients send around ABOR.</summary>
    static int SkipTelnet(ReadOnlySpan<byte> line)
    {
        int i = 0;
        while (i + 1 < line.Length && line[i] == Iac)
        {
            byte c = line[i + 1];
            if (c is >= 251 and <= 254) i += 3; // WILL/WONT/DO/DONT + option
            else if (c is >= 240 and < 255) i += 2;
            else break; // IAC IAC is a data byte
        }
        // A lone DM byte is what is left when the urgent IAC was consumed out of band.
        while (i < line.Length && line[i] == 242) i++;
        return Math.Min(i, line.Length);
    }

    static FtpParse Bad(FtpCommandSpec spec, int start, int code, string error, out FtpCommandLine cmd)
    {
        cmd = new FtpCommandLine { Spec = spec, VerbStart = start, ArgLength = -1, PathLength = -1, ErrorCode = code, Error = error };
        return FtpParse.Malformed;
    }

    static FtpParse Fail(ref FtpCommandLine cmd, int code, string error)
    {
        cmd = cmd with { ErrorCode = code, Error = error };
        return FtpParse.Malformed;
    }

    static FtpParse CheckArg(FtpCommandSpec spec, ReadOnlySpan<byte> arg, ref FtpCommandLine cmd)
    {
        bool has = cmd.ArgLength > 0;
        switch (spec.Arg)
        {
            case FtpArg.None:
                return has ? Fail(ref cmd, 501, $"{spec.Name} takes no argument") : FtpParse.Ok;
            case FtpArg.OptionalText:
                return FtpParse.Ok;
            case FtpArg.Text:
                return has ? FtpParse.Ok : Fail(ref cmd, 501, $"{spec.Name} needs an argument");
            case FtpArg.Path:
                if (!has) return Fail(ref cmd, 501, $"{spec.Name} needs a path");
                cmd = cmd with { PathLength = cmd.ArgLength };
                return FtpParse.Ok;
            case FtpArg.OptionalPath:
                if (has) cmd = cmd with { PathLength = cmd.ArgLength };
                return FtpParse.Ok;
            case FtpArg.ListPath:
                return ListPath(arg, ref cmd);
            case FtpArg.TimeAndPath:
                return TimeAndPath(arg, ref cmd);
            case FtpArg.Number:
                if (!has || !TryNumber(arg, out var n)) return Fail(ref cmd, 501, $"{spec.Name} needs a decimal number");
                cmd = cmd with { Number = n };
                return FtpParse.Ok;
            case FtpArg.Pbsz:
                if (!has || !TryNumber(arg, out var size)) return Fail(ref cmd, 501, "PBSZ needs a decimal number");
                cmd = cmd with { Number = size };
                return FtpParse.Ok;
            case FtpArg.Type:
                return TypeArg(arg, ref cmd);
            case FtpArg.Structure:
                if (!has || arg.Length != 1) return Fail(ref cmd, 501, "STRU needs F, R or P");
                return Upper(arg[0]) switch
                {
                    (byte)'F' => FtpParse.Ok,
                    (byte)'R' or (byte)'P' => Fail(ref cmd, 504, "only file structure (STRU F) is supported"),
                    _ => Fail(ref cmd, 501, "STRU needs F, R or P"),
                };
            case FtpArg.Mode:
                if (!has || arg.Length != 1) return Fail(ref cmd, 501, "MODE needs S, B, C or Z");
                return Upper(arg[0]) switch
                {
                    (byte)'S' => FtpParse.Ok,
                    (byte)'B' or (byte)'C' or (byte)'Z' => Fail(ref cmd, 504, "only stream mode (MODE S) is supported"),
                    _ => Fail(ref cmd, 501, "MODE needs S, B, C or Z"),
                };
            case FtpArg.Port:
                if (!has || !FtpAddress.TryParsePort(arg, out var pep)) return Fail(ref cmd, 501, "PORT needs h1,h2,h3,h4,p1,p2");
                cmd = cmd with { Address = pep };
                return FtpParse.Ok;
            case FtpArg.Eprt:
                if (!has) return Fail(ref cmd, 501, "EPRT needs |proto|address|port|");
                var r = FtpAddress.TryParseEprt(arg, out var eep);
                if (r == FtpAddress.EprtResult.UnknownProtocol) return Fail(ref cmd, 522, "Network protocol not supported, use (1,2)");
                if (r != FtpAddress.EprtResult.Ok) return Fail(ref cmd, 501, "EPRT needs |proto|address|port|");
                cmd = cmd with { Address = eep };
                return FtpParse.Ok;
            case FtpArg.Epsv:
                if (!has) return FtpParse.Ok;
                if (AsciiEquals(arg, "ALL")) { cmd = cmd with { EpsvProto = -1 }; return FtpParse.Ok; }
                if (arg.Length == 1 && arg[0] is (byte)'1' or (byte)'2') { cmd = cmd with { EpsvProto = arg[0] - '0' }; return FtpParse.Ok; }
                if (TryNumber(arg, out _)) return Fail(ref cmd, 522, "Network protocol not supported, use (1,2)");
                return Fail(ref cmd, 501, "EPSV takes 1, 2 or ALL");
            case FtpArg.Auth:
                if (!has) return Fail(ref cmd, 501, "AUTH needs a mechanism");
                if (AsciiEquals(arg, "TLS") || AsciiEquals(arg, "TLS-C") || AsciiEquals(arg, "SSL")) return FtpParse.Ok;
                return Fail(ref cmd, 504, "unsupported security mechanism (AUTH TLS is)");
            case FtpArg.Prot:
                if (!has || arg.Length != 1) return Fail(ref cmd, 501, "PROT needs C, S, E or P");
                byte l = Upper(arg[0]);
                if (l is not ((byte)'C' or (byte)'S' or (byte)'E' or (byte)'P')) return Fail(ref cmd, 504, "PROT needs C, S, E or P");
                cmd = cmd with { Letter = l };
                return FtpParse.Ok;
        }
        return FtpParse.Ok;
    }

    /// <summary>`-flags` tokens, then an optional path (`LIST -la /pub`).</summary>
    static FtpParse ListPath(ReadOnlySpan<byte> arg, ref FtpCommandLine cmd)
    {
        int i = 0;
        while (i < arg.Length && arg[i] == (byte)'-')
        {
            int j = i + 1;
            while (j < arg.Length && arg[j] != (byte)' ')
            {
                if (!char.IsAsciiLetterOrDigit((char)arg[j]) && arg[j] != (byte)'-') return Fail(ref cmd, 501, "bad LIST option");
                j++;
            }
            i = j;
            while (i < arg.Length && arg[i] == (byte)' ') i++;
        }
        if (i < arg.Length) cmd = cmd with { PathStart = cmd.ArgStart + i, PathLength = arg.Length - i };
        return FtpParse.Ok;
    }

    /// <summary>MFMT: `YYYYMMDDHHMMSS[.sss] path` (draft-somers-ftp-mfxx).</summary>
    static FtpParse TimeAndPath(ReadOnlySpan<byte> arg, ref FtpCommandLine cmd)
    {
        int sp = arg.IndexOf((byte)' ');
        if (sp < 14 || sp + 1 >= arg.Length) return Fail(ref cmd, 501, "MFMT needs YYYYMMDDHHMMSS and a path");
        var time = arg[..sp];
        for (int i = 0; i < time.Length; i++)
        {
            bool ok = i < 14 ? char.IsAsciiDigit((char)time[i]) : i == 14 ? time[i] == (byte)'.' : char.IsAsciiDigit((char)time[i]);
            if (!ok || time.Length > 18) return Fail(ref cmd, 501, "MFMT needs YYYYMMDDHHMMSS and a path");
        }
        cmd = cmd with { PathStart = cmd.ArgStart + sp + 1, PathLength = arg.Length - sp - 1 };
        return FtpParse.Ok;
    }

    /// <summary>TYPE A, A N, A T, A C, E (same forms), I, L n.</summary>
    static FtpParse TypeArg(ReadOnlySpan<byte> arg, ref FtpCommandLine cmd)
    {
        if (arg.Length == 0) return Fail(ref cmd, 501, "TYPE needs A, I, E or L 8");
        byte t = Upper(arg[0]);
        var rest = arg[1..];
        bool ok = t switch
        {
            (byte)'A' or (byte)'E' => rest.Length == 0 || (rest.Length == 2 && rest[0] == ' ' && Upper(rest[1]) is (byte)'N' or (byte)'T' or (byte)'C'),
            (byte)'I' => rest.Length == 0,
            (byte)'L' => rest.Length >= 2 && rest[0] == ' ' && TryNumber(rest[1..], out var bits) && bits is > 0 and < 256,
            _ => false,
        };
        if (!ok) return Fail(ref cmd, 501, "TYPE needs A, I, E or L 8");
        cmd = cmd with { Letter = t };
        return FtpParse.Ok;
    }

    static byte Upper(byte b) => b is >= (byte)'a' and <= (byte)'z' ? (byte)(b - 32) : b;

    public static bool AsciiEquals(ReadOnlySpan<byte> a, string upper)
    {
        if (a.Length != upper.Length) return false;
        for (int i = 0; i < a.Length; i++)
            if (Upper(a[i]) != upper[i]) return false;
        return true;
    }

    /// <summary>1-18 ASCII digits (no sign, no spaces).</summary>
    public static bool TryNumber(ReadOnlySpan<byte> s, out long value)
    {
        value = 0;
        if (s.Length is 0 or > 18) return false;
        foreach (var b in s)
        {
            if (b is < (byte)'0' or > (byte)'9') return false;
            value = value * 10 + (b - '0');
        }
        return true;
    }
}
