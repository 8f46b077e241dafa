using System.Text;
using Bastion.Protocols.Ftp;

namespace Bastion.Tests.Ftp;

public class FtpReplyTests
{
    static (ReplyParse Status, FtpReply Reply) Feed(params string[] lines)
    {
        var r = new FtpReply();
        var s = ReplyParse.NeedMore;
        foreach (var l in lines)
        {
            s = r.Feed(Encoding.Latin1.GetBytes(l));
            if (s != ReplyParse.NeedMore) break;
        }
        return (s, r);
    }

    [Fact]
    public void Single_line_replies()
    {
        var (s, r) = Feed("220 ready");
        Assert.Equal(ReplyParse.Complete, s);
        Assert.Equal(220, r.Code);
        Assert.False(r.IsMultiline);
        Assert.Equal("ready", Encoding.ASCII.GetString(r.FirstText));
        Assert.Equal("220 ready\r\n", Encoding.ASCII.GetString(r.Raw.Span));
        (s, r) = Feed("200");
        Assert.Equal(ReplyParse.Complete, s);
        Assert.Equal(0, r.FirstText.Length);
    }

    [Fact]
    public void Multi_line_replies_end_at_the_same_code_and_a_space()
    {
        var (s, r) = Feed("211-Features:", " SIZE", "211-not the end", "212 not the end", "211End?", "211 End");
        Assert.Equal(ReplyParse.Complete, s);
        Assert.Equal(211, r.Code);
        Assert.True(r.IsMultiline);
        Assert.Equal(6, r.Lines().Count);
        Assert.Equal(" SIZE", Encoding.ASCII.GetString(r.Lines()[1].Span));
        (s, _) = Feed("230-welcome", "230");
        Assert.Equal(ReplyParse.Complete, s);
    }

    [Theory]
    [InlineData("HTTP/1.1 400 Bad Request")]
    [InlineData("SSH-2.0-OpenSSH_9.2")]
    [InlineData("22")]
    [InlineData("220x ready")]
    [InlineData("620 six hundred")]
    [InlineData("260 second digit")]
    [InlineData("")]
    [InlineData("220 nul\0inside")]
    public void Garbage_is_malformed(string line)
    {
        var (s, r) = Feed(line);
        Assert.Equal(ReplyParse.Malformed, s);
        Assert.NotNull(r.Error);
    }

    [Fact]
    public void Bounded_in_lines_and_bytes()
    {
        var r = new FtpReply(maxBytes: 1000, maxLines: 10);
        Assert.Equal(ReplyParse.NeedMore, r.Feed("200-start"u8));
        var s = ReplyParse.NeedMore;
        for (int i = 0; i < 20 && s == ReplyParse.NeedMore; i++) s = r.Feed("line"u8);
        Assert.Equal(ReplyParse.Malformed, s);
        r = new FtpReply(maxBytes: 100, maxLines: 10);
        Assert.Equal(ReplyParse.Malformed, r.Feed(Encoding.ASCII.GetBytes("200 " + new string('x', 200))));
    }

    [Fact]
    public void Reset_reuses_the_collector()
    {
        var r = new FtpReply();
        Assert.Equal(ReplyParse.Complete, r.Feed("150 go"u8));
        Assert.Equal(ReplyParse.Malformed, r.Feed("226 again"u8));
        r.Reset();
        Assert.Equal(ReplyParse.Complete, r.Feed("226 done"u8));
        Assert.Equal(226, r.Code);
    }

    static readonly string[][] ValidReplies =
    [
        ["220 Bastion test"],
        ["211-Features:", " EPSV", " MLST type*;size*;", " UTF8", "211 End"],
        ["230-Welcome", "  to the server", "230 Login successful."],
        ["257 \"/a \"\"quoted\"\" dir\" is current"],
    ];

    [Fact]
    public void Every_line_sequence_prefix_needs_more_until_the_last_line()
    {
        foreach (var reply in ValidReplies)
        {
            var r = new FtpReply();
            for (int i = 0; i < reply.Length; i++)
            {
                var s = r.Feed(Encoding.ASCII.GetBytes(reply[i]));
                Assert.Equal(i == reply.Length - 1 ? ReplyParse.Complete : ReplyParse.NeedMore, s);
            }
            // Every truncation of every line, as a first line, is a value.
            foreach (var line in reply)
                for (int n = 0; n <= line.Length; n++)
                {
                    var t = new FtpReply();
                    var s = t.Feed(Encoding.ASCII.GetBytes(line[..n]));
                    if (s == ReplyParse.Malformed) Assert.NotNull(t.Error);
                }
        }
    }

    [Fact]
    public void Random_mutations_never_throw_and_complete_replies_are_well_formed()
    {
        var rng = new Random(7);
        for (int round = 0; round < 5000; round++)
        {
            var reply = ValidReplies[rng.Next(ValidReplies.Length)].Select(Encoding.ASCII.GetBytes).ToArray();
            var victim = reply[rng.Next(reply.Length)];
            if (victim.Length > 0) victim[rng.Next(victim.Length)] = (byte)rng.Next(256);
            var r = new FtpReply();
            var s = ReplyParse.NeedMore;
            foreach (var line in reply)
            {
                s = r.Feed(line);
                if (s != ReplyParse.NeedMore) break;
            }
            if (s == ReplyParse.Complete)
            {
                Assert.InRange(r.Code, 100, 559);
                Assert.EndsWith("\r\n", Encoding.Latin1.GetString(r.Raw.Span));
            }
            if (s == ReplyParse.Malformed) Assert.NotNull(r.Error);
        }
    }
}
