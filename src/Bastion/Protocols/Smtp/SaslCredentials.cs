using System.Buffers;
using System.Buffers.Text;
using System.Text;
using System.Text.Unicode;

namespace Bastion.Protocols.Smtp;

/// <summary>The SASL mechanisms the gateway offers with AUTH (RFC 4954): both carry a user name and a password.</summary>
public enum SaslMechanism : byte { Unknown, Plain, Login }

public enum SaslStatus : byte { Ok, Cancelled, Malformed }

/// <summary>
/// Sans-I/O decoding of the AUTH command and its responses (RFC 4954, RFC 4616 PLAIN, the LOGIN draft). Works on
/// the line's bytes; every failure is a status with a reason, never an exception.
/// </summary>
public static class SaslCredentials
{
    /// <summary>RFC 4954 4: a response line may be up to 12288 octets; anything longer is refused before decoding.</summary>
    public const int MaxResponse = 12288;

    /// <summary>
    /// `AUTH mechanism [initial-response]` (the argument after "AUTH "). The initial response is "=" for an empty
    /// one (RFC 4954 4), absent when the client waits for a 334 challenge.
    /// </summary>
    public static bool ParseCommand(ReadOnlySpan<byte> arg, out SaslMechanism mechanism, out ReadOnlySpan<byte> initial, out bool hasInitial)
    {
        int sp = arg.IndexOf((byte)' ');
        var name = sp < 0 ? arg : arg[..sp];
        initial = sp < 0 ? [] : arg[(sp + 1)..];
        hasInitial = sp >= 0;
        mechanism = SmtpCommandParser.AsciiEqualsIgnoreCase(name, "PLAIN"u8) ? SaslMechanism.Plain
            : SmtpCommandParser.AsciiEqualsIgnoreCase(name, "LOGIN"u8) ? SaslMechanism.Login
            : SaslMechanism.Unknown;
        // One argument after the mechanism, base64 or "=", nothing else.
        return !hasInitial || (initial.Length > 0 && initial.IndexOf((byte)' ') < 0);
    }

    /// <summary>Decodes one base64 response line ("*" cancels, "=" is empty) into UTF-8 text.</summary>
    public static SaslStatus DecodeText(ReadOnlySpan<byte> line, out string text, out string reason)
    {
        text = "";
        var st = Decode(line, out var bytes, out reason);
        if (st != SaslStatus.Ok) return st;
        if (!Utf8.IsValid(bytes) || bytes.AsSpan().IndexOfAnyInRange((byte)0, (byte)31) >= 0)
            return Fail("the credential is not printable UTF-8", out reason);
        text = Encoding.UTF8.GetString(bytes);
        return SaslStatus.Ok;
    }

    /// <summary>PLAIN (RFC 4616): [authzid] NUL authcid NUL passwd. An authzid other than the user itself is refused.</summary>
    public static SaslStatus DecodePlain(ReadOnlySpan<byte> line, out string user, out string password, out string reason)
    {
        user = password = "";
        var st = Decode(line, out var bytes, out reason);
        if (st != SaslStatus.Ok) return st;
        var s = bytes.AsSpan();
        int a = s.IndexOf((byte)0);
        if (a < 0) return Fail("PLAIN needs authzid NUL user NUL password", out reason);
        int b = s[(a + 1)..].IndexOf((byte)0);
        if (b < 0) return Fail("PLAIN needs authzid NUL user NUL password", out reason);
        var authz = s[..a];
        var authc = s.Slice(a + 1, b);
        var pass = s[(a + 1 + b + 1)..];
        if (authc.IsEmpty || pass.IndexOf((byte)0) >= 0) return Fail("PLAIN needs a user and one password", out reason);
        if (!Utf8.IsValid(s) || authc.IndexOfAnyInRange((byte)0, (byte)31) >= 0 || pass.IndexOfAnyInRange((byte)1, (byte)31) >= 0)
            return Fail("the credential is not printable UTF-8", out reason);
        if (!authz.IsEmpty && !authz.SequenceEqual(authc)) return Fail("acting for another user (authzid) is not supported", out reason);
        user = Encoding.UTF8.GetString(authc);
        password = Encoding.UTF8.GetString(pass);
        return SaslStatus.Ok;
    }

    static SaslStatus Decode(ReadOnlySpan<byte> line, out byte[] bytes, out string reason)
    {
        bytes = [];
        reason = "";
        if (line.Length == 1 && line[0] == '*') { reason = "authentication cancelled"; return SaslStatus.Cancelled; }
        if (line.Length == 1 && line[0] == '=') return SaslStatus.Ok;
        if (line.IsEmpty || line.Length > MaxResponse || line.Length % 4 != 0) return Fail("the response is not base64", out reason);
        var buf = new byte[Base64.GetMaxDecodedFromUtf8Length(line.Length)];
        if (Base64.DecodeFromUtf8(line, buf, out int used, out int written) != OperationStatus.Done || used != line.Length)
            return Fail("the response is not base64", out reason);
        bytes = buf[..written];
        return SaslStatus.Ok;
    }

    static SaslStatus Fail(string why, out string reason)
    {
        reason = why;
        return SaslStatus.Malformed;
    }

    /// <summary>The LOGIN mechanism's challenges: base64 of "Username:" and "Password:".</summary>
    public const string UserChallenge = "VXNlcm5hbWU6";
    public const string PasswordChallenge = "UGFzc3dvcmQ6";
}
