using System.Text;
using Bastion.Protocols.Smtp;

namespace Bastion.Tests.Smtp;

/// <summary>AUTH PLAIN and LOGIN decoding: valid credentials, every malformed form a status (never an exception).</summary>
public class SaslCredentialsTests
{
    static byte[] B64(string s) => Encoding.ASCII.GetBytes(Convert.ToBase64String(Encoding.UTF8.GetBytes(s)));

    [Theory]
    [InlineData("\0alice\0secret", "alice", "secret")]
    [InlineData("alice\0alice\0pa ss:wörd", "alice", "pa ss:wörd")]
    [InlineData("\0jürgen\0x", "jürgen", "x")]
    public void Plain_gives_user_and_password(string decoded, string user, string password)
    {
        Assert.Equal(SaslStatus.Ok, SaslCredentials.DecodePlain(B64(decoded), out var u, out var p, out _));
        Assert.Equal((user, password), (u, p));
    }

    [Theory]
    [InlineData("bob\0alice\0secret", "authzid")]
    [InlineData("alice\0secret", "NUL")]
    [InlineData("alicesecret", "NUL")]
    [InlineData("\0\0secret", "user")]
    [InlineData("\0alice\0sec\0ret", "user")]
    [InlineData("\0al\u0001ice\0secret", "printable")]
    public void Plain_refuses_malformed_credentials(string decoded, string why)
    {
        Assert.Equal(SaslStatus.Malformed, SaslCredentials.DecodePlain(B64(decoded), out _, out _, out var reason));
        Assert.Contains(why, reason);
    }

    [Theory]
    [InlineData("*", SaslStatus.Cancelled)]
    [InlineData("not base64!", SaslStatus.Malformed)]
    [InlineData("YWJj=", SaslStatus.Malformed)]
    [InlineData("YW", SaslStatus.Malformed)]
    [InlineData("", SaslStatus.Malformed)]
    public void Responses_that_are_not_base64_are_refused_and_star_cancels(string line, SaslStatus status)
    {
        Assert.Equal(status, SaslCredentials.DecodeText(Encoding.ASCII.GetBytes(line), out _, out _));
        Assert.Equal(status, SaslCredentials.DecodePlain(Encoding.ASCII.GetBytes(line), out _, out _, out _));
    }

    [Fact]
    public void Login_responses_decode_to_text_and_the_empty_response_is_equals()
    {
        Assert.Equal(SaslStatus.Ok, SaslCredentials.DecodeText(B64("alice"), out var user, out _));
        Assert.Equal("alice", user);
        Assert.Equal(SaslStatus.Ok, SaslCredentials.DecodeText("="u8, out var empty, out _));
        Assert.Equal("", empty);
        Assert.Equal("Username:", Encoding.ASCII.GetString(Convert.FromBase64String(SaslCredentials.UserChallenge)));
        Assert.Equal("Password:", Encoding.ASCII.GetString(Convert.FromBase64String(SaslCredentials.PasswordChallenge)));
    }

    [Theory]
    [InlineData("PLAIN", SaslMechanism.Plain, false, "")]
    [InlineData("plain AGFsaWNlAHNlY3JldA==", SaslMechanism.Plain, true, "AGFsaWNlAHNlY3JldA==")]
    [InlineData("LOGIN YWxpY2U=", SaslMechanism.Login, true, "YWxpY2U=")]
    [InlineData("CRAM-MD5", SaslMechanism.Unknown, false, "")]
    public void The_auth_command_names_a_mechanism_and_maybe_an_initial_response(string arg, SaslMechanism mech, bool has, string initial)
    {
        Assert.True(SaslCredentials.ParseCommand(Encoding.ASCII.GetBytes(arg), out var m, out var i, out var h));
        Assert.Equal((mech, has, initial), (m, h, Encoding.ASCII.GetString(i)));
        Assert.False(SaslCredentials.ParseCommand("PLAIN a b"u8, out _, out _, out _));
        Assert.False(SaslCredentials.ParseCommand("PLAIN "u8, out _, out _, out _));
    }

    [Fact]
    public void Every_prefix_and_random_mutations_give_a_status_never_an_exception()
    {
        var valid = B64("\0alice\0secret");
        for (int n = 0; n <= valid.Length; n++)
        {
            var st = SaslCredentials.DecodePlain(valid.AsSpan(0, n), out var u, out _, out _);
            Assert.True(n == valid.Length ? st == SaslStatus.Ok && u == "alice" : st != SaslStatus.Ok || n % 4 == 0);
        }
        var rng = new Random(4954);
        for (int k = 0; k < 20_000; k++)
        {
            var m = (byte[])valid.Clone();
            for (int j = rng.Next(1, 4); j > 0; j--) m[rng.Next(m.Length)] = (byte)rng.Next(256);
            var st = SaslCredentials.DecodePlain(m, out var u, out var p, out var why);
            if (st == SaslStatus.Ok) Assert.True(u.Length > 0 && !u.Contains('\0') && !p.Contains('\0'));
            else Assert.NotEmpty(why);
            SaslCredentials.DecodeText(m, out _, out _);
            SaslCredentials.ParseCommand(m, out _, out _, out _);
        }
    }
}
